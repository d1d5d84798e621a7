"""Settings: explicit arguments > environment > ``finetune.toml`` profile > defaults.

``finetune.toml``::

    default = "local"                      # the profile used when none is named

    [profiles.local]
    provider = "local"
    base_model = "smollm2-135m-instruct"

    [profiles.azure]
    provider = "azure"
    endpoint = "https://my-resource.openai.azure.com"
    api_version = "2025-04-01-preview"

The file is found from the ``config=`` argument, else ``FINETUNE_CONFIG``, else
``./finetune.toml``. The profile is chosen by the ``profile=`` argument, else
``FINETUNE_PROFILE``, else the file's ``default``. Secrets (API keys, tokens) are never
read from nor written to the file: they come from the environment, an argument or a
credential object, and they never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ._secrets import register_secret
from .errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["CONFIG_FILENAME", "Profile", "ProviderSettings", "setting", "find_config", "load_profile",
           "profile_names", "finetune_home"]

CONFIG_FILENAME = "finetune.toml"
ENV_CONFIG = "FINETUNE_CONFIG"
ENV_PROFILE = "FINETUNE_PROFILE"
ENV_HOME = "FINETUNE_HOME"

S = TypeVar("S", bound="ProviderSettings")


def finetune_home(env: Mapping[str, str] | None = None) -> Path:
    """Where the SDK keeps state: ``FINETUNE_HOME``, else the user cache directory."""
    env = os.environ if env is None else env
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME]).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "finetune"


def setting(default: Any = None, *, env: tuple[str, ...] = (), secret: bool = False, example: str | None = None,
            description: str = "") -> Any:
    """Declare a provider setting: where it may come from and an example for error messages."""
    return Field(default, description=description,
                 json_schema_extra={"env": list(env), "secret": secret, "example": example})


@dataclass(frozen=True)
class Profile:
    """A profile read from ``finetune.toml`` (or an empty one when there is no file)."""

    name: str | None
    provider: str | None
    values: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None
    looked: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        if self.path is None:
            return "no finetune.toml (looked: " + "; ".join(self.looked) + ")" if self.looked else "no config file"
        return f"{self.path} [profiles.{self.name}]" if self.name else str(self.path)


def find_config(config: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
                cwd: str | os.PathLike[str] | None = None) -> tuple[Path | None, tuple[str, ...]]:
    """The config file to use, and a description of the places looked.

    An explicitly named file (argument or ``FINETUNE_CONFIG``) must exist.
    """
    env = os.environ if env is None else env
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"Config file {path} (from the config= argument) does not exist.")
        return path, (f"argument config={path}",)
    if env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG]).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"Config file {path} (from {ENV_CONFIG}) does not exist. "
                                     f"Fix or unset {ENV_CONFIG}.")
        return path, (f"{ENV_CONFIG}={path}",)
    candidate = Path(cwd or os.getcwd()) / CONFIG_FILENAME
    looked = ("config= argument (not given)", f"{ENV_CONFIG} (not set)", str(candidate))
    return (candidate, looked) if candidate.is_file() else (None, looked)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {path}: {exc.strerror or exc}.") from None


def profile_names(config: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> list[str]:
    """The profiles of the config file (none without a file)."""
    path, _ = find_config(config, env=env)
    if path is None:
        return []
    profiles = _read_toml(path).get("profiles", {})
    return list(profiles) if isinstance(profiles, dict) else []


def load_profile(profile: str | None = None, *, config: str | os.PathLike[str] | None = None,
                 provider: str | None = None, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> Profile:
    """Find the config file and pick a profile from it.

    ``provider`` given explicitly works without any file (all settings then come from
    arguments and the environment); a profile named explicitly must exist.
    """
    env = os.environ if env is None else env
    path, looked = find_config(config, env=env, cwd=cwd)
    name = profile or env.get(ENV_PROFILE) or None
    source = "the profile= argument" if profile else f"{ENV_PROFILE}" if name else None
    if path is None:
        if name:
            raise ConfigurationError(
                f"Profile {name!r} (from {source}) was requested but no {CONFIG_FILENAME} was found. "
                f"Looked: {'; '.join(looked)}. Create {CONFIG_FILENAME} with:\n\n"
                f"[profiles.{name}]\nprovider = \"openai\"   # or azure, local, ...")
        return Profile(name=None, provider=provider, path=None, looked=looked)
    data = _read_toml(path)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict) or any(not isinstance(v, dict) for v in profiles.values()):
        raise ConfigurationError(f"{path}: [profiles] must be a table of tables, like [profiles.local].")
    unknown_top = set(data) - {"default", "profiles"}
    if unknown_top:
        raise ConfigurationError(f"{path}: unknown top-level key(s) {sorted(unknown_top)}; only 'default' and "
                                 f"[profiles.NAME] tables are allowed.")
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigurationError(f"{path}: 'default' must be a profile name (a string).")
    if name is None:
        name = default
        source = f"'default' in {path}"
    if name is None:
        if provider is not None:
            return Profile(name=None, provider=provider, path=path, looked=looked)
        if len(profiles) == 1:
            name = next(iter(profiles))
            source = f"the only profile in {path}"
        else:
            raise ConfigurationError(
                f"No profile chosen and {path} has no 'default'. Pass profile=..., set {ENV_PROFILE}, or add "
                f"default = \"{next(iter(profiles), 'local')}\" to {path}. Profiles: {', '.join(profiles) or 'none'}.")
    if name not in profiles:
        close = difflib.get_close_matches(name, list(profiles), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"Profile {name!r} (from {source}) is not in {path}; it has: "
                                 f"{', '.join(profiles) or 'no profiles'}.{hint}")
    values = dict(profiles[name])
    file_provider = values.pop("provider", None)
    if file_provider is not None and not isinstance(file_provider, str):
        raise ConfigurationError(f"{path} [profiles.{name}]: 'provider' must be a string.")
    return Profile(name=name, provider=provider or file_provider, values=values, path=path, looked=looked)


class ProviderSettings(BaseModel):
    """Base class of each provider's settings.

    Subclasses declare fields with :func:`setting`; :meth:`resolve` fills them from
    explicit arguments, then the environment, then the profile, then defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str | None = setting(None, env=("FINETUNE_BASE_MODEL",),
                                     example='base_model = "gpt-4o-mini-2024-07-18"',
                                     description="The default base model for new jobs.")

    @classmethod
    def _meta(cls, name: str) -> dict[str, Any]:
        extra = cls.model_fields[name].json_schema_extra
        return extra if isinstance(extra, dict) else {}

    @classmethod
    def env_names(cls, name: str) -> list[str]:
        return list(cls._meta(name).get("env") or []) + [f"FINETUNE_{name.upper()}"]

    @classmethod
    def is_secret(cls, name: str) -> bool:
        return bool(cls._meta(name).get("secret"))

    @classmethod
    def resolve(cls: type[S], *, provider: str, explicit: Mapping[str, Any] | None = None,
                profile: Profile | None = None, env: Mapping[str, str] | None = None) -> S:
        """Build the settings, raising :class:`ConfigurationError` for anything missing or wrong."""
        env = os.environ if env is None else env
        explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
        profile = profile or Profile(name=None, provider=provider)
        fields = cls.model_fields
        for source_name, keys in (("argument", explicit.keys()), (profile.where, profile.values.keys())):
            unknown = [k for k in keys if k not in fields]
            if unknown:
                k = unknown[0]
                close = difflib.get_close_matches(k, list(fields), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigurationError(f"Unknown setting {k!r} for the {provider} provider (in {source_name}).{hint} "
                                         f"Known settings: {', '.join(sorted(fields))}.")
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for name, info in fields.items():
            secret = cls.is_secret(name)
            if secret and name in profile.values:
                env_hint = cls.env_names(name)[0]
                raise ConfigurationError(
                    f"{profile.where} sets {name!r}, but secrets are never read from the config file. Remove it and "
                    f"set {env_hint} in the environment (or pass {name}=... in code).")
            if name in explicit:
                values[name], origin[name] = explicit[name], f"argument {name}="
                continue
            for var in cls.env_names(name):
                if env.get(var):
                    values[name], origin[name] = env[var], f"environment variable {var}"
                    break
            else:
                if name in profile.values:
                    values[name], origin[name] = profile.values[name], profile.where
                elif info.is_required():
                    raise ConfigurationError(cls._missing_message(name, provider, profile))
        try:
            settings = cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first.get("loc") else "?"
            where = origin.get(name, "defaults")
            # Never echo the offending value: it may be a secret.
            raise ConfigurationError(f"Invalid setting {name!r} for the {provider} provider (from {where}): "
                                     f"{first.get('msg', 'invalid value')}.") from None
        for name in fields:
            if cls.is_secret(name):
                value = getattr(settings, name)
                register_secret(value.get_secret_value() if isinstance(value, SecretStr) else value)
        return settings

    @classmethod
    def _missing_message(cls, name: str, provider: str, profile: Profile) -> str:
        meta = cls._meta(name)
        envs = cls.env_names(name)
        places = [f"the {name}= argument", "environment variable(s) " + ", ".join(envs)]
        if cls.is_secret(name):
            places.append(f"(secrets are never read from {CONFIG_FILENAME})")
        else:
            places.append(profile.where)
        example = meta.get("example")
        if not example:
            example = f'export {envs[0]}=...' if cls.is_secret(name) else f'{name} = "..."'
        section = f"[profiles.{profile.name or provider}]"
        how = f"Example: {example}" if cls.is_secret(name) or example.startswith("export") \
            else f"Example, in {CONFIG_FILENAME} {section}: {example}"
        return f"Missing setting {name!r} for the {provider} provider. Looked in: {'; '.join(places)}. {how}"

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name is not None and type(self).is_secret(name) and value is not None:
                yield name, "***"
            else:
                yield name, value
