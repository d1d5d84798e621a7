"""Configuration: profiles, precedence, missing settings, and secrets kept out of the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import SecretStr

from finetune_sdk.config import ProviderSettings, find_config, finetune_home, load_profile, setting
from finetune_sdk.errors import ConfigurationError

CANARY = "sk-canary-7f3e9a1b2c4d5e6f"


class DemoSettings(ProviderSettings):
    api_key: SecretStr = setting(..., env=("DEMO_API_KEY",), secret=True, example="export DEMO_API_KEY=sk-...")
    endpoint: str = setting(..., env=("DEMO_ENDPOINT",), example='endpoint = "https://demo.example"')
    timeout: float = setting(30.0)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "finetune.toml"
    p.write_text(text)
    return p


def test_profile_from_default(tmp_path: Path) -> None:
    write(tmp_path, 'default = "a"\n[profiles.a]\nprovider = "openai"\n[profiles.b]\nprovider = "azure"\n')
    prof = load_profile(env={}, cwd=tmp_path)
    assert (prof.name, prof.provider) == ("a", "openai")


def test_profile_precedence_argument_over_env_over_default(tmp_path: Path) -> None:
    write(tmp_path, 'default = "a"\n[profiles.a]\nprovider = "x"\n[profiles.b]\nprovider = "y"\n'
                    '[profiles.c]\nprovider = "z"\n')
    assert load_profile(env={"FINETUNE_PROFILE": "b"}, cwd=tmp_path).name == "b"
    assert load_profile("c", env={"FINETUNE_PROFILE": "b"}, cwd=tmp_path).name == "c"


def test_config_file_precedence(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    cwd_file = write(tmp_path, '[profiles.cwd]\nprovider = "x"\n')
    env_file = tmp_path / "sub" / "env.toml"
    env_file.write_text('[profiles.env]\nprovider = "x"\n')
    arg_file = tmp_path / "sub" / "arg.toml"
    arg_file.write_text('[profiles.arg]\nprovider = "x"\n')
    assert find_config(env={}, cwd=tmp_path)[0] == cwd_file
    assert find_config(env={"FINETUNE_CONFIG": str(env_file)}, cwd=tmp_path)[0] == env_file
    assert find_config(arg_file, env={"FINETUNE_CONFIG": str(env_file)}, cwd=tmp_path)[0] == arg_file
    assert load_profile(config=arg_file, env={}, cwd=tmp_path).name == "arg"


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        find_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigurationError, match="FINETUNE_CONFIG"):
        find_config(env={"FINETUNE_CONFIG": str(tmp_path / "nope.toml")})


def test_no_file_with_explicit_provider(tmp_path: Path) -> None:
    prof = load_profile(provider="openai", env={}, cwd=tmp_path)
    assert prof.provider == "openai" and prof.path is None


def test_named_profile_without_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as exc:
        load_profile("prod", env={}, cwd=tmp_path)
    assert "finetune.toml" in str(exc.value) and "[profiles.prod]" in str(exc.value)


def test_unknown_profile_suggests(tmp_path: Path) -> None:
    write(tmp_path, '[profiles.azure]\nprovider = "azure"\n[profiles.local]\nprovider = "local"\n')
    with pytest.raises(ConfigurationError, match="Did you mean 'azure'"):
        load_profile("azur", env={}, cwd=tmp_path)


def test_ambiguous_without_default(tmp_path: Path) -> None:
    write(tmp_path, '[profiles.a]\nprovider = "x"\n[profiles.b]\nprovider = "y"\n')
    with pytest.raises(ConfigurationError, match="no 'default'"):
        load_profile(env={}, cwd=tmp_path)


@pytest.mark.parametrize("text, match", [
    ("this is = = not toml", "not valid TOML"),
    ('default = 3\n[profiles.a]\nprovider = "x"\n', "must be a profile name"),
    ('profiles = 3\n', "table of tables"),
    ('[profiles.a]\nprovider = 3\n', "'provider' must be a string"),
    ('nonsense = 1\n[profiles.a]\nprovider = "x"\n', "unknown top-level"),
])
def test_bad_files(tmp_path: Path, text: str, match: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=match):
        load_profile("a", env={}, cwd=tmp_path)


def test_settings_precedence(tmp_path: Path) -> None:
    write(tmp_path, '[profiles.p]\nprovider = "demo"\nendpoint = "https://file"\ntimeout = 5\n')
    prof = load_profile("p", env={}, cwd=tmp_path)
    env = {"DEMO_API_KEY": CANARY}
    s = DemoSettings.resolve(provider="demo", profile=prof, env=env)
    assert s.endpoint == "https://file" and s.timeout == 5
    s = DemoSettings.resolve(provider="demo", profile=prof, env={**env, "DEMO_ENDPOINT": "https://env"})
    assert s.endpoint == "https://env"
    s = DemoSettings.resolve(provider="demo", profile=prof, env={**env, "DEMO_ENDPOINT": "https://env"},
                             explicit={"endpoint": "https://arg"})
    assert s.endpoint == "https://arg"
    # the generic FINETUNE_<NAME> variable works for every setting
    s = DemoSettings.resolve(provider="demo", profile=prof, env={**env, "FINETUNE_TIMEOUT": "7"})
    assert s.timeout == 7


def test_missing_setting_names_setting_places_and_example(tmp_path: Path) -> None:
    write(tmp_path, '[profiles.p]\nprovider = "demo"\n')
    prof = load_profile("p", env={}, cwd=tmp_path)
    with pytest.raises(ConfigurationError) as exc:
        DemoSettings.resolve(provider="demo", profile=prof, env={"DEMO_API_KEY": CANARY})
    msg = str(exc.value)
    assert "'endpoint'" in msg and "DEMO_ENDPOINT" in msg and "[profiles.p]" in msg
    assert 'endpoint = "https://demo.example"' in msg
    with pytest.raises(ConfigurationError) as exc:
        DemoSettings.resolve(provider="demo", profile=prof, env={}, explicit={"endpoint": "https://x"})
    assert "DEMO_API_KEY" in str(exc.value) and "never read from" in str(exc.value)


def test_secret_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    write(tmp_path, f'[profiles.p]\nprovider = "demo"\nendpoint = "https://x"\napi_key = "{CANARY}"\n')
    prof = load_profile("p", env={}, cwd=tmp_path)
    with pytest.raises(ConfigurationError) as exc:
        DemoSettings.resolve(provider="demo", profile=prof, env={"DEMO_API_KEY": "sk-other-123456"})
    assert "secrets are never read" in str(exc.value)
    assert CANARY not in str(exc.value) and CANARY not in repr(exc.value)


def test_unknown_setting_suggests(tmp_path: Path) -> None:
    write(tmp_path, '[profiles.p]\nprovider = "demo"\nendpont = "https://x"\n')
    prof = load_profile("p", env={}, cwd=tmp_path)
    with pytest.raises(ConfigurationError, match="Did you mean 'endpoint'"):
        DemoSettings.resolve(provider="demo", profile=prof, env={"DEMO_API_KEY": CANARY})
    with pytest.raises(ConfigurationError, match="Unknown setting 'bogus'"):
        DemoSettings.resolve(provider="demo", env={"DEMO_API_KEY": CANARY}, explicit={"bogus": 1, "endpoint": "x"})


def test_invalid_value_does_not_echo_secret() -> None:
    with pytest.raises(ConfigurationError) as exc:
        DemoSettings.resolve(provider="demo", env={"DEMO_API_KEY": CANARY, "DEMO_ENDPOINT": "x",
                                                   "FINETUNE_TIMEOUT": "not-a-number"})
    assert "'timeout'" in str(exc.value) and "FINETUNE_TIMEOUT" in str(exc.value)
    assert CANARY not in str(exc.value)


def test_secret_never_in_repr_str_or_pickle_of_settings_and_errors() -> None:
    s = DemoSettings.resolve(provider="demo", env={"DEMO_API_KEY": CANARY, "DEMO_ENDPOINT": "https://x"})
    assert s.api_key.get_secret_value() == CANARY
    for text in (repr(s), str(s), s.model_dump_json()):
        assert CANARY not in text
    # once registered, a secret is scrubbed from any error built with it
    err = ConfigurationError(f"request to https://x?api-key={CANARY} failed, key {CANARY}")
    for text in (str(err), repr(err), pickle.dumps(err).decode("latin-1")):
        assert CANARY not in text
    assert CANARY not in str(pickle.loads(pickle.dumps(err)))


def test_finetune_home(tmp_path: Path) -> None:
    assert finetune_home({"FINETUNE_HOME": str(tmp_path)}) == tmp_path
    assert finetune_home({"XDG_CACHE_HOME": str(tmp_path)}).name == "finetune"
