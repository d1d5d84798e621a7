"""Regenerate the bundled demo dataset (finetune_sdk/datasets/contacts.*.jsonl).

The task: read one sentence about a person and answer with exactly one compact JSON
object {"name": ..., "age": ..., "city": ...}. Success is measurable by exact match, a
small instruct model does not do it reliably out of the box, and a LoRA fine-tune learns
it in a few hundred steps. Deterministic: the same seed writes the same files.

    python scripts/make_demo_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Extract the person's name, age and city. Reply with JSON only."

NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lucia", "Omar", "Ingrid", "Pedro", "Chloe", "Dmitri", "Fatima",
         "Liam", "Sofia", "Ravi", "Hannah", "Mateo", "Yuki", "Noah", "Amara", "Felix", "Zara", "Oscar", "Leila",
         "Hugo", "Nadia", "Ethan", "Priya", "Lars", "Elena", "Kwame", "Mei", "Jonas", "Ana", "Tariq", "Greta",
         "Diego", "Isla", "Marek", "Sana", "Bruno", "Alma", "Viktor", "Rosa", "Emil", "Nora", "Samir", "Clara",
         "Ivan", "Lina", "Pablo"]
CITIES = ["Lisbon", "Denver", "Nairobi", "Osaka", "Madrid", "Cairo", "Oslo", "Lima", "Lyon", "Kazan", "Tunis",
          "Dublin", "Turin", "Pune", "Leeds", "Quito", "Sapporo", "Austin", "Accra", "Graz", "Perth", "Malmo",
          "Beirut", "Nantes", "Krakow", "Boston", "Mumbai", "Bergen", "Seville", "Kumasi", "Xiamen", "Bremen",
          "Porto", "Izmir", "Gdansk", "Cusco", "Aarhus", "Brno", "Fez", "Cork"]
TEMPLATES = [
    "{name} is {age} and lives in {city}.",
    "Meet {name}, a {age}-year-old from {city}.",
    "{city} resident {name} turned {age} this spring.",
    "At {age}, {name} still calls {city} home.",
    "{name} ({age}) moved to {city} last year.",
    "Our new colleague {name}, aged {age}, works from {city}.",
    "Born and raised in {city}, {name} is now {age}.",
    "The winner, {name} of {city}, is {age} years old.",
    "{name}, {age}, {city}.",
    "I met {name} in {city}; she said she was {age}.",
    "Registration: {name}, age {age}, city {city}.",
    "{name} has lived in {city} for years and is {age} today.",
]


def example(rng: random.Random) -> tuple[str, str]:
    name, city, age = rng.choice(NAMES), rng.choice(CITIES), rng.randint(18, 89)
    sentence = rng.choice(TEMPLATES).format(name=name, city=city, age=age)
    answer = json.dumps({"name": name, "age": age, "city": city}, separators=(",", ":"))
    return sentence, answer


def main() -> None:
    rng = random.Random(20261129)
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    while len(rows) < 400:
        s, a = example(rng)
        if s not in seen:
            seen.add(s)
            rows.append((s, a))
    out = Path(__file__).resolve().parent.parent / "finetune_sdk" / "datasets"
    splits = {"train": rows[:300], "validation": rows[300:340], "test": rows[340:]}
    for split, items in splits.items():
        with open(out / f"contacts.{split}.jsonl", "w", encoding="utf-8") as f:
            for sentence, answer in items:
                f.write(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                                 {"role": "user", "content": sentence},
                                                 {"role": "assistant", "content": answer}]}) + "\n")
        print(f"wrote {len(items)} examples to {out / f'contacts.{split}.jsonl'}")


if __name__ == "__main__":
    main()
