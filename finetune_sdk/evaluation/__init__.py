"""Evaluating models on held-out examples: is the new model as good as the old one?

:func:`evaluate` answers chat examples (the last assistant message is the expected answer)
with any number of candidates — models on any profile, and base models with few-shot
prompts — scores them (exact, JSON, contains, similarity, your code, an LLM judge) and
reports each score with a 95% bootstrap interval, the paired difference to the first
candidate, tokens, latency, cost and failures. :func:`compare` is the simpler base-versus-
tuned comparison the demo used first.
"""

from .compare import Answer, Comparison, compare, load_examples, score
from .data import EvalExample, load_eval_examples
from .report import AnswerRecord, CandidateReport, Evaluation, ScoreReport
from .run import evaluate, parse_target
from .scorers import BUILTIN as BUILTIN_SCORERS
from .scorers import JUDGE_RUBRIC

__all__ = ["evaluate", "Evaluation", "CandidateReport", "ScoreReport", "AnswerRecord", "EvalExample",
           "load_eval_examples", "parse_target", "JUDGE_RUBRIC", "BUILTIN_SCORERS", "compare", "Comparison",
           "Answer", "load_examples", "score"]
