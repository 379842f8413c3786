"""The one TOML configuration file, validated into pydantic models at start-up.

Why one file: the operator edits a single ``partrig.toml`` on the Pi, and every part of the
system (rig, capture, web, sorter) reads its own section of it.  The models live here, in the
bottom layer, because ``rig`` must not import the packages above it; the later layers only read
their sections.

Where the file comes from: ``--config PATH`` on the command line, else ``$PARTRIG_CONFIG``, else
``partrig.toml`` in the working directory, else the built-in defaults (which select the real
hardware; ``--sim`` overrides that).

Every bad value becomes a :class:`~rig.errors.ConfigError` whose message names the key as the
operator wrote it (``turntable.microsteps``) and what is allowed.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from rig.errors import ConfigError
from rig.sort_rules import SortRule, check_order

CONFIG_ENV = "PARTRIG_CONFIG"
DEFAULT_CONFIG_NAME = "partrig.toml"

PositiveFloat = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    # NOTE: forbid unknown keys so a typo ("microstep = 16") is an error, not a silent default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SerialConfig(_Section):
    """How to reach the RAMPS board."""

    port: str = Field("/dev/partrig-ramps", description="serial device path or pyserial URL")
    baud: Literal[9600, 57600, 115200, 230400, 250000, 500000, 1000000] = 250000
    open_without_reset: bool = Field(
        True, description="keep DTR low on open so the Mega does not reset (best effort)"
    )
    command_timeout_s: float = Field(5.0, gt=0, le=600)
    long_command_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="timeout for M400/G4/G28 without busy keepalives"
    )
    busy_timeout_s: float = Field(
        5.0, gt=0, le=600, description="timeout once the firmware has sent busy: keepalives"
    )
    resend_limit: int = Field(10, ge=1, le=100, description="requests for one line before failing")
    missing_ok_after_resend_s: float = Field(
        0.5, gt=0, le=10, description="wait before supplying the ok a firmware did not send"
    )
    max_in_flight: int = Field(
        4, ge=1, le=16, description="commands in flight when the firmware reports ADVANCED_OK"
    )
    reconnect_attempts: int = Field(10, ge=0, le=1000)
    reconnect_interval_s: float = Field(0.5, gt=0, le=60)
    handshake_timeout_s: float = Field(10.0, gt=0, le=120)


class TurntableConfig(_Section):
    """Mechanics of the turntable: degrees are converted to axis units from these."""

    steps_per_rev: int = Field(200, ge=1, le=100000, description="full steps per motor turn")
    microsteps: Literal[1, 2, 4, 8, 16, 32, 64, 128, 256] = 16
    gear_ratio: float = Field(1.0, gt=0, le=1000, description="motor turns per turntable turn")
    max_speed_deg_s: float = Field(360.0, gt=0, le=10000)
    accel_deg_s2: float = Field(720.0, gt=0, le=100000)
    mode: Literal["absolute", "shortest"] = Field(
        "shortest", description="how rotate_to picks a direction"
    )
    position_tolerance_deg: float = Field(0.05, ge=0, le=5)
    endstop: Literal["none", "x_min"] = Field(
        "none", description="x_min: a homing switch on the RAMPS X-min input"
    )
    hold_when_idle: bool = True

    @property
    def steps_per_degree(self) -> float:
        return self.steps_per_rev * self.microsteps * self.gear_ratio / 360.0


class LightsConfig(_Section):
    """The LED ring on one RAMPS MOSFET output."""

    pin: Literal["D8", "D9", "D10"] = Field("D9", description="RAMPS MOSFET output")
    level: float = Field(1.0, ge=0, le=1, description="brightness when switched on")


class CameraConfig(_Section):
    driver: Literal["picamera2", "opencv", "sim"] = "picamera2"
    still_size: tuple[int, int] = Field((4056, 3040), description="width, height of stills")
    preview_size: tuple[int, int] = Field((640, 480), description="width, height of preview")
    device: int = Field(0, ge=0, le=63, description="V4L2 index for the opencv driver")
    lock_exposure: bool = True
    frontend_timeout_s: float = Field(5.0, gt=0, le=120)

    @field_validator("still_size", "preview_size")
    @classmethod
    def _size(cls, v: tuple[int, int]) -> tuple[int, int]:
        w, h = v
        if not (16 <= w <= 16384 and 16 <= h <= 16384):
            raise ValueError("width and height must be between 16 and 16384 pixels")
        return v


class MarlinOptions(_Section):
    """``[simulator.marlin]``: single Marlin build options of the simulated board.

    Unset keys follow the profile ``simulator.firmware`` names (``marlin`` = built with
    ``firmware/marlin/config.ini``, ``marlin-stock`` = Marlin's own defaults), so a test can
    turn one option wrong and see the handshake refuse it.  See docs/simulator.md.
    """

    emergency_parser: bool | None = Field(None, description="EMERGENCY_PARSER")
    advanced_ok: bool | None = Field(None, description="ADVANCED_OK")
    no_workspace_offsets: bool | None = Field(None, description="NO_WORKSPACE_OFFSETS")
    min_steps_per_segment: int | None = Field(
        None, ge=1, le=100, description="MIN_STEPS_PER_SEGMENT"
    )
    direct_pin_control: bool | None = Field(None, description="DIRECT_PIN_CONTROL (M42)")
    home_pos: float | None = Field(
        None,
        ge=-1e6,
        le=1e6,
        description="X at boot and after G28: MANUAL_X_HOME_POS, else X_MIN_POS",
    )
    move_overhead_ms: float | None = Field(
        None, ge=0, le=1000, description="extra time before each move starts from rest"
    )


class SimConfig(_Section):
    """The simulated rig: fidelity and fault knobs."""

    firmware: Literal["partrig", "marlin", "marlin-stock"] = Field(
        "partrig",
        description="the simulated firmware: partrig, marlin (built with config.ini) or "
        "marlin-stock (Marlin's defaults)",
    )
    marlin: MarlinOptions = Field(
        default_factory=MarlinOptions, description="per-option overrides of the Marlin profile"
    )
    time_scale: float = Field(
        1.0, ge=0, le=1000, description="1 = real time; 0 = virtual clock (instant)"
    )
    exposure_ms: float = Field(100.0, ge=0, le=10000, description="exposure plus readout")
    noise: float = Field(2.0, ge=0, le=50, description="sensor noise sigma in 8-bit levels")
    corrupt_to_firmware: float = Field(0.0, ge=0, le=0.5, description="probability per line")
    corrupt_to_host: float = Field(0.0, ge=0, le=0.5, description="probability per line")
    drop_ok: float = Field(0.0, ge=0, le=0.5, description="probability an ok is lost")
    seed: int = 0
    optics: Literal["framed", "metric"] = Field(
        "framed",
        description="framed: the frame is the sheet (fast, not to scale); metric: a pinhole "
        "lens looking down on a printed A4/Letter sheet, everything at its real size in mm",
    )
    camera_height_mm: float = Field(
        300.0, ge=150, le=600, description="metric optics: lens height above the sheet"
    )
    lens_k1: float = Field(
        0.0, ge=-0.3, le=0.3, description="metric optics: radial distortion k1 (OpenCV model)"
    )
    sheet_paper: Literal["a4", "letter"] = Field(
        "a4", description="metric optics: the paper the sheets are printed on"
    )
    board: str = Field(
        "",
        max_length=4096,
        description="the serial link of a simulated board running in its own process "
        "(`python -m rig.sim.board --link PATH`); empty: the board runs inside this process",
    )


class DataConfig(_Section):
    dir: Path = Field(Path("data"), description="database and images live here")
    jpeg_quality: int = Field(92, ge=1, le=100)
    thumbnail_px: int = Field(256, ge=32, le=1024)


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    preview_fps: float = Field(12.0, gt=0, le=60)
    public_banner: bool = True
    header_timeout_s: float = Field(
        10.0,
        ge=1,
        le=300,
        description="a request's line and headers must arrive within this many seconds of its "
        "first byte (or of the connection); slower clients are closed (slowloris)",
    )
    keep_alive_s: float = Field(
        5.0, ge=1, le=300, description="an idle keep-alive connection is closed after this"
    )
    accel_redirect: str = Field(
        "",
        pattern=r"^(/[A-Za-z0-9._~-]+)*$",
        description="behind nginx: the internal location that serves data.dir/snapshots "
        "(e.g. /_partrig_snapshots); snapshot files are then sent by nginx (sendfile) after "
        "partrig has checked the key and the manifest. Empty: partrig sends them itself.",
    )

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses (or CIDR ranges) of a reverse proxy such as nginx whose "
        "X-Forwarded-For names the real client; empty: proxy headers are ignored",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="extra names the Host header may carry (e.g. partrig.example.org); "
        "IP literals, localhost and this machine's hostname are always accepted",
    )
    max_body_kb: int = Field(
        64, ge=1, le=16384, description="largest request body for JSON and form routes (KiB)"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR range (e.g. 127.0.0.1)"
                ) from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", item):
                raise ValueError(f"{item!r} is not a host name (letters, digits, '.' and '-')")
        return [item.lower() for item in value]

    @field_validator("accel_redirect")
    @classmethod
    def _plain_location(cls, value: str) -> str:
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError("must be a plain nginx location path such as /_partrig_snapshots")
        return value


class AuthConfig(_Section):
    """Browser password (hashed) and API keys per role.  Keys go in the ``X-Api-Key`` header."""

    operator_password_hash: str = Field("", description="argon2 hash; see `partrig auth`")
    session_secret: str = Field("", description="random secret for cookies; generated if empty")
    viewer_keys: list[str] = Field(default_factory=list)
    operator_keys: list[str] = Field(default_factory=list)
    trainer_keys: list[str] = Field(default_factory=list)
    rate_limit_per_min: int = Field(6000, ge=1, le=1000000)
    login_attempts_per_min: int = Field(
        10, ge=1, le=1000, description="password attempts a minute from one client address"
    )
    login_attempts_global_per_min: int = Field(
        30, ge=1, le=10000, description="password attempts a minute from all clients together"
    )
    login_concurrency: int = Field(
        2, ge=1, le=16, description="password checks at once (argon2 uses 64 MiB each)"
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="a sign-in lasts this long")

    @property
    def configured(self) -> bool:
        return bool(self.operator_password_hash or self.operator_keys)


class ActuatorConfig(_Section):
    driver: Literal["gpio", "sim"] = "gpio"
    kind: Literal["valve", "servo"] = "valve"
    pins: list[int] = Field(default_factory=list, description="BCM pin per bin, in bin order")
    pulse_ms: float = Field(40.0, gt=0, le=5000)
    servo_pin: int = Field(18, ge=0, le=27)
    servo_angles: list[float] = Field(default_factory=list, description="degrees per bin")
    review_bin: int = Field(0, ge=0, le=15)


class SorterConfig(_Section):
    enabled: bool = False
    collect_for_review: bool = Field(
        False,
        description="with no active model, start on boot anyway and send every part to review",
    )
    confidence_threshold: float = Field(0.7, ge=0, le=1)
    # NOTE: these only tighten the model's own model.json values (classify/decide.py).
    min_margin: float = Field(
        0.0, ge=0, le=1, description="top-1 minus top-2 probability a part needs to be binned"
    )
    open_set_threshold: float = Field(
        0.0, ge=0, description="open-set score above which a part goes to review; 0 = the model's"
    )
    stable_frames: int = Field(3, ge=1, le=100)
    presence_threshold: float = Field(
        0.002, gt=0, le=1, description="changed-pixel fraction of the frame that means a part"
    )
    stuck_after_s: float = Field(20.0, gt=0, le=3600)
    sample_every: int = Field(50, ge=0, le=1000000, description="keep every Nth crop; 0 = none")
    num_threads: int = Field(2, ge=1, le=64)
    bins: dict[str, int] = Field(default_factory=dict, description="label -> bin")
    # NOTE: rig/sort_rules.py checks each rule and their order; classify/rules.py checks them
    # against the model's heads and the actuator's bins.
    rules: list[SortRule] = Field(
        default_factory=list, description="bins by predicted attributes and measured size"
    )
    # NOTE: classify/recirculate.py: a part whose pose does not show the size a rule needs goes
    # round again through this bin's chute (back to the feeder) instead of to review.
    recirculate_bin: int | None = Field(
        None, ge=0, le=15, description="bin whose chute leads back to the feeder; none = off"
    )
    max_recirculations: int = Field(
        3, ge=0, le=100, description="recirculations in a row before the next part goes to review"
    )

    @field_validator("rules")
    @classmethod
    def _rules_in_order(cls, rules: list[SortRule]) -> list[SortRule]:
        check_order(rules)
        return rules

    @model_validator(mode="after")
    def _recirculate_bin_free(self) -> SorterConfig:
        b = self.recirculate_bin
        if b is None:
            return self
        for i, rule in enumerate(self.rules):
            if rule.bin == b:
                raise ValueError(
                    f"recirculate_bin {b} is also the bin of {rule.title(i)}: parts sent round "
                    "again would mix with sorted ones; choose a bin no rule uses"
                )
        for label, target in self.bins.items():
            if target == b:
                raise ValueError(
                    f"recirculate_bin {b} is also the bin of label {label!r} (sorter.bins); "
                    "choose a bin no label uses"
                )
        return self


class ModelsConfig(_Section):
    accuracy_tolerance: float = Field(0.02, ge=0, le=1)
    accuracy_floor: float = Field(0.8, ge=0, le=1, description="needed when no model is active")
    # NOTE: uploaded models are untrusted; docs/security.md "Untrusted models" explains each.
    max_model_file_mb: int = Field(64, ge=1, le=1024, description="per .tflite file")
    max_input_side: int = Field(1024, ge=8, le=4096, description="model input, pixels a side")
    max_tensors: int = Field(10_000, ge=10, le=1_000_000)
    check_memory_mb: int = Field(1024, ge=64, description="validation child, beyond its imports")
    check_cpu_s: int = Field(300, ge=1, description="validation child's CPU time")
    check_timeout_s: float = Field(300.0, gt=0, description="validation child's wall clock")
    keep_rejected: int = Field(10, ge=1, description="rejected uploads whose files are kept")
    rejected_quota_mb: int = Field(256, ge=1, description="bytes of rejected uploads kept")
    max_upload_mb: int = Field(
        160, ge=1, le=4096, description="largest model upload request (all its files, MiB)"
    )


class CaptureConfig(_Section):
    """Bounds on capture plans, checked before a plan is expanded into shots."""

    max_shots: int = Field(
        20000, ge=1, le=10_000_000, description="largest plan (shots) a run or preview accepts"
    )


class SnapshotConfig(_Section):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)
    seed: int = 0
    shard_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)


def _default_rig_id() -> str:
    import socket

    # NOTE: the host name is unique on a site's network, so two rigs left at the default still
    # publish to one bucket without colliding; lower-cased and trimmed to the id's alphabet.
    name = re.sub(r"[^a-z0-9._-]+", "-", socket.gethostname().lower()).strip("-._")
    return (name or "rig")[:64]


class RigIdentity(_Section):
    """``[rig]``: who this rig is when it publishes to shared object storage."""

    id: str = Field(
        default_factory=_default_rig_id,
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="namespace of this rig's published snapshots (<prefix>/<rig.id>/snap-NNNN/); "
        "default: the host name",
    )


class StorageConfig(_Section):
    """``[storage]``: S3-compatible object storage (AWS S3, MinIO, Ceph) for published
    snapshots and models.  Credentials come from the usual AWS environment or files, never
    from this file."""

    url: str = Field(
        "",
        pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?)?$",
        description="s3://bucket/prefix that `partrig dataset publish` uses when none is given",
    )
    endpoint_url: str = Field(
        "",
        pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
        description="e.g. http://minio.local:9000; empty: AWS, or $AWS_ENDPOINT_URL",
    )
    region: str = Field("", pattern=r"^[a-z0-9-]{0,32}$", description="empty: $AWS_REGION")
    concurrency: int = Field(8, ge=1, le=64, description="parallel transfers")
    part_size_mb: int = Field(16, ge=5, le=5120, description="multipart part size (MiB)")
    publish_after_snapshot: bool = Field(
        False, description="publish every new snapshot to storage.url once it is written"
    )


class Settings(_Section):
    """The whole configuration file."""

    sim: bool = Field(False, description="use the simulated rig (the --sim flag sets this)")
    serial: SerialConfig = SerialConfig()
    turntable: TurntableConfig = TurntableConfig()
    lights: LightsConfig = LightsConfig()
    camera: CameraConfig = CameraConfig()
    simulator: SimConfig = SimConfig()
    data: DataConfig = DataConfig()
    web: WebConfig = WebConfig()
    auth: AuthConfig = AuthConfig()
    actuator: ActuatorConfig = ActuatorConfig()
    sorter: SorterConfig = SorterConfig()
    models: ModelsConfig = ModelsConfig()
    snapshot: SnapshotConfig = SnapshotConfig()
    capture: CaptureConfig = CaptureConfig()
    rig: RigIdentity = Field(default_factory=RigIdentity)
    storage: StorageConfig = StorageConfig()

    source: Path | None = Field(None, exclude=True, description="file this was read from")

    @model_validator(mode="after")
    def _recirculate_not_review(self) -> Settings:
        if self.sorter.recirculate_bin == self.actuator.review_bin:
            raise ValueError(
                f"sorter.recirculate_bin {self.sorter.recirculate_bin} is the review bin "
                "(actuator.review_bin): parts for review would be sent round again; choose "
                "another bin"
            )
        return self


def _describe(err: ErrorDetails) -> str:
    key = ".".join(str(p) for p in err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key; check the spelling against docs/configuration.md"
    elif err["type"] == "literal_error":
        msg = "must be one of " + str(err.get("ctx", {}).get("expected", ""))
    got = err.get("input")
    shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
    return f"{key}: {msg}{shown}"


def parse_settings(raw: dict[str, Any], source: Path | None = None) -> Settings:
    """Validate a dict (as read from TOML) into :class:`Settings`, or raise ConfigError."""
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        where = f"{source}: " if source else ""
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(where + "invalid configuration:\n  " + "\n  ".join(lines)) from None
    settings.source = source
    return settings


def find_config(path: Path | str | None = None) -> Path | None:
    """Which file to read: the explicit path, ``$PARTRIG_CONFIG``, or ``./partrig.toml``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.exists() else None


def load_settings(path: Path | str | None = None, *, sim: bool | None = None) -> Settings:
    """Read and validate the configuration; ``sim`` (from ``--sim``) overrides the file."""
    file = find_config(path)
    raw: dict[str, Any] = {}
    if file is not None:
        if not file.exists():
            raise ConfigError(
                f"configuration file {file} does not exist; create it or unset {CONFIG_ENV}"
            )
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    settings = parse_settings(raw, file)
    if sim is not None and sim:
        settings = apply_sim(settings)
    return settings


def apply_sim(settings: Settings) -> Settings:
    """Switch every device to its simulator, as ``--sim`` asks."""
    s = settings.model_copy(deep=True)
    s.sim = True
    s.camera.driver = "sim"
    s.actuator.driver = "sim"
    return s


def dump_settings(settings: Settings) -> str:
    """The effective configuration as TOML, for ``partrig config show``."""
    data = settings.model_dump(mode="json", exclude={"source"})
    return _to_toml(data)


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted one (labels may hold dots or spaces)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(str(key))


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        # NOTE: None is "not set" (an override left to its profile); TOML has no null.
        items = [f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }"
    if v is None:
        return '""'
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _to_toml(data: dict[str, Any]) -> str:
    # NOTE: a None setting is left out (TOML has no null): reading the file back gives the
    # field its default, which is None for every optional setting.
    top = [
        f"{k} = {_toml_value(v)}"
        for k, v in data.items()
        if not isinstance(v, dict) and v is not None
    ]
    out = [*top, ""] if top else []
    for name, section in data.items():
        if isinstance(section, dict):
            out.append(f"[{name}]")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in section.items() if v is not None)
            out.append("")
    return "\n".join(out)
