"""The typed configuration tree (one tree, parsed once, passed explicitly).

Every model is frozen and rejects unknown keys, so a typo in YAML fails loudly with its key
path instead of being ignored. Defaults are the values documented in ``docs/config.md``.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._exceptions import ConfigError

M = TypeVar("M", bound=BaseModel)


def parse_config(model: type[M], data: Any, root: str = "") -> M:
    """Validate ``data`` as ``model``; errors become one ConfigError that lists every
    problem (``errors``), each naming its key path."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as err:
        errors = tuple(_describe(model, root, e) for e in err.errors())
        raise ConfigError("\n".join(errors), errors) from None


def _describe(model: type[BaseModel], root: str, error: Any) -> str:
    path = ".".join(str(p) for p in (root, *error["loc"]) if p != "")
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        msg = "unknown key"
    value = error.get("input")
    if error["loc"] and error["loc"][-1] in _SECRET_KEYS:
        shown = " (value <redacted>)"  # never echo a secret into logs
    elif isinstance(value, dict):
        shown = ""  # a cross-field check: the message names the keys involved
    else:
        shown = f" (value {value!r})"
    return f"{path or model.__name__}: {msg}{shown}"


_SECRET_KEYS = frozenset({"auth_token", "redis_url"})  # a redis URL may carry a password
SECRET_KEY_PATHS = (("service", "auth_token"),)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class KellyConfig(_Strict):
    """Bayesian Kelly base size (docs/sizing-math.md §2)."""

    model: Literal["predictive", "binary", "gaussian"] = "predictive"
    fraction: float = Field(0.25, gt=0.0, le=1.0)
    max_fraction: float = Field(0.5, gt=0.0, le=1.0)
    prior_strength: float = Field(50.0, gt=0.0, le=1e6)
    uncertainty_z: float = Field(1.0, ge=0.0, le=5.0)
    default_payoff_ratio: float = Field(1.0, gt=0.0, le=100.0)
    payoff_prior_strength: float = Field(20.0, gt=0.0, le=1e6)
    risk_weight: float = Field(0.5, ge=0.0, le=1.0)
    # predictive model (docs/sizing-math.md §2.1-2.4)
    edge_prior_kelly: float = Field(1.0, gt=0.0, le=100.0)
    report_strength: float = Field(1.0, ge=0.0, le=1e6)
    exploration_fraction: float = Field(0.0005, ge=0.0, le=0.05)
    exploration_z: float = Field(2.5, ge=0.0, le=5.0)
    volatility_target: float | None = Field(None, gt=0.0, le=1.0)


class ConformalConfig(_Strict):
    """Online conformal scaling (docs/sizing-math.md §3)."""

    alpha: float = Field(0.1, gt=0.0, lt=0.5)
    window: int = Field(250, ge=10, le=100_000)
    min_samples: int = Field(20, ge=2, le=100_000)
    cold_start_factor: float = Field(0.8, gt=0.0, le=1.0)
    min_multiplier: float = Field(0.25, gt=0.0, le=1.0)
    aci_gamma: float = Field(0.005, ge=0.0, le=0.1)
    reference_volatility: float = Field(0.02, gt=0.0, le=5.0)

    @model_validator(mode="after")
    def _samples_fit_window(self) -> ConformalConfig:
        if self.min_samples > self.window:
            raise ValueError(
                f"min_samples was {self.min_samples}, expected <= window ({self.window})"
            )
        return self


class SentimentConfig(_Strict):
    """Direction-aware sentiment adjustment."""

    enabled: bool = True
    weight: float = Field(0.15, ge=0.0, le=0.5)
    neutral_low: float = Field(0.4, ge=0.0, le=0.5)
    neutral_high: float = Field(0.6, ge=0.5, le=1.0)


class RegimeMultipliers(_Strict):
    """Multipliers for a long position; shorts use the mirror (up and down swapped)."""

    TRENDING_UP: float = Field(1.2, ge=0.0, le=2.0)
    TRENDING_DOWN: float = Field(0.8, ge=0.0, le=2.0)
    RANGING: float = Field(1.0, ge=0.0, le=2.0)
    HIGH_VOLATILITY: float = Field(0.6, ge=0.0, le=2.0)
    CRISIS: float = Field(0.2, ge=0.0, le=2.0)


class RegimeConfig(_Strict):
    """Per-symbol regime hysteresis: slow to loosen, fast to tighten."""

    multipliers: RegimeMultipliers = RegimeMultipliers()
    confirmation_periods: int = Field(3, ge=1, le=1000)
    escalation_periods: int = Field(1, ge=1, le=1000)


class CascadeThresholds(_Strict):
    """Reading at which each component saturates at 1."""

    funding_rate: float = Field(0.001, gt=0.0, le=1.0)
    oi_drop: float = Field(0.10, gt=0.0, le=1.0)
    volume_ratio: float = Field(3.0, gt=1.0, le=1000.0)
    whale_pressure: float = Field(0.8, gt=0.0, le=1.0)
    netflow_zscore: float = Field(3.0, gt=0.0, le=50.0)


class CascadeWeights(_Strict):
    funding_rate: float = Field(0.20, ge=0.0, le=1.0)
    oi_drop: float = Field(0.25, ge=0.0, le=1.0)
    volume_ratio: float = Field(0.15, ge=0.0, le=1.0)
    whale_pressure: float = Field(0.25, ge=0.0, le=1.0)
    netflow_zscore: float = Field(0.15, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> CascadeWeights:
        total = sum(self.model_dump().values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"weights summed to {total!r}, expected 1.0")
        return self


class CascadeConfig(_Strict):
    """Cascade-risk score and its recommendation bands."""

    thresholds: CascadeThresholds = CascadeThresholds()
    weights: CascadeWeights = CascadeWeights()
    exit_above: float = Field(0.8, ge=0.0, le=1.0)
    reduce_75_above: float = Field(0.6, ge=0.0, le=1.0)
    reduce_50_above: float = Field(0.4, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> CascadeConfig:
        if not self.reduce_50_above <= self.reduce_75_above <= self.exit_above:
            raise ValueError("expected reduce_50_above <= reduce_75_above <= exit_above")
        return self


class LimitsConfig(_Strict):
    """Direction rules and per-position caps."""

    allow_short: bool = False
    max_position_pct: float = Field(0.15, gt=0.0, le=1.0)
    max_position_usd: float | None = Field(None, gt=0.0)
    min_position_usd: float = Field(10.0, ge=0.0)


class ExecutionConfig(_Strict):
    """Stop-loss and take-profit distances in predicted-volatility units."""

    stop_loss_sigma: float = Field(2.0, gt=0.0, le=20.0)
    take_profit_sigma: float = Field(3.0, gt=0.0, le=50.0)


class RetentionConfig(_Strict):
    """Caps on Phase 1's learned keys; beyond one, the least recently used keys are
    forgotten (``sizing/retention.py`` says why LRU and not a TTL or a refusal)."""

    max_strategy_symbols: int = Field(10_000, ge=1, le=10_000_000)
    max_strategies: int = Field(1_000, ge=1, le=1_000_000)
    max_symbols: int = Field(2_000, ge=1, le=1_000_000)


class SizingConfig(_Strict):
    """Everything Phase 1 reads."""

    kelly: KellyConfig = KellyConfig()
    conformal: ConformalConfig = ConformalConfig()
    sentiment: SentimentConfig = SentimentConfig()
    regime: RegimeConfig = RegimeConfig()
    cascade: CascadeConfig = CascadeConfig()
    limits: LimitsConfig = LimitsConfig()
    execution: ExecutionConfig = ExecutionConfig()
    retention: RetentionConfig = RetentionConfig()


class CorrelationConfig(_Strict):
    """Rolling, time-aligned correlation monitor."""

    window: int = Field(120, ge=5, le=100_000)
    min_observations: int = Field(20, ge=3, le=100_000)
    max_correlation: float = Field(0.7, ge=0.0, le=1.0)
    penalty_strength: float = Field(0.5, ge=0.0, le=1.0)
    use_multi_asset_kelly: bool = True
    max_symbols_per_row: int = Field(512, ge=1, le=100_000)
    max_symbols: int = Field(512, ge=2, le=100_000)
    max_clock_skew_sec: float = Field(60.0, gt=0.0, le=31_536_000.0)

    @model_validator(mode="after")
    def _observations_fit_window(self) -> CorrelationConfig:
        # Otherwise the monitor never has enough aligned rows and correlation is inert.
        if self.min_observations > self.window:
            raise ValueError(f"min_observations was {self.min_observations}, expected <= "
                             f"window ({self.window})")
        if self.max_symbols_per_row > self.max_symbols:
            raise ValueError(f"max_symbols_per_row was {self.max_symbols_per_row}, expected "
                             f"<= max_symbols ({self.max_symbols})")
        return self


class PortfolioConfig(_Strict):
    """Phase 2 hierarchical budgets, the book's net and leverage caps, drift tracking."""

    max_position_pct: float = Field(0.15, gt=0.0, le=1.0)
    max_strategy_pct: float = Field(0.40, gt=0.0, le=1.0)
    max_portfolio_pct: float = Field(0.80, gt=0.0, le=1.0)
    max_net_pct: float = Field(0.80, gt=0.0, le=1.0)
    max_leverage: float = Field(1.0, gt=0.0, le=10.0)
    drift_threshold: float = Field(0.20, gt=0.0, le=10.0)
    weight_history_size: int = Field(10_000, ge=10, le=10_000_000)
    max_signal_clock_skew_sec: float = Field(60.0, gt=0.0, le=31_536_000.0)
    correlation: CorrelationConfig = CorrelationConfig()


class BookConfig(_Strict):
    """The book: standing targets per portfolio (docs/execution.md)."""

    target_ttl_sec: float = Field(14_400.0, gt=0.0, le=31_536_000.0)
    max_portfolios: int = Field(16, ge=1, le=10_000)
    max_targets: int = Field(2_000, ge=1, le=1_000_000)


class TradingStateConfig(_Strict):
    """When trading stops by itself: the triggers of ACTIVE → REDUCING → HALTED
    (docs/execution.md, "Trading states")."""

    daily_loss_limit_pct: float = Field(0.03, gt=0.0, le=1.0)
    max_drawdown_pct: float = Field(0.15, gt=0.0, le=1.0)
    reduce_at_fraction: float = Field(0.8, gt=0.0, le=1.0)
    day_start_utc: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    stale_after_sec: float = Field(5.0, gt=0.0, le=86_400.0)
    halt_action: Literal["flatten", "freeze"] = "flatten"
    cooldown_sec: float | None = Field(None, gt=0.0, le=31_536_000.0)


class FillModelConfig(_Strict):
    """How a simulated order fills (paper executor and backtest; docs/execution.md)."""

    fee_bps: float = Field(5.0, ge=0.0, le=1_000.0)
    slippage_bps: float = Field(2.0, ge=0.0, le=1_000.0)
    impact_bps: float = Field(10.0, ge=0.0, le=10_000.0)
    impact_exponent: float = Field(0.5, gt=0.0, le=2.0)
    slippage_noise_bps: float = Field(0.0, ge=0.0, le=1_000.0)
    max_participation: float = Field(0.1, gt=0.0, le=1.0)
    latency_sec: float = Field(0.0, ge=0.0, le=3_600.0)
    latency_bars: int = Field(0, ge=0, le=1_000)
    seed: int = Field(0, ge=0, le=2**63 - 1)


class OrderExecutionConfig(_Strict):
    """Order intents for Layer 4: instrument rules, no-trade band, order defaults; the
    paper executor that fills them itself instead, and its fill model (docs/execution.md)."""

    markets_file: str | None = Field(None, min_length=1)
    precision_mode: Literal["tick_size", "decimal_places"] = "tick_size"
    intent_ttl_sec: float = Field(300.0, gt=0.0, le=604_800.0)
    no_trade_band_pct: float = Field(0.001, ge=0.0, le=0.1)
    no_trade_band_usd: float = Field(10.0, ge=0.0, le=1e9)
    order_type: Literal["market", "limit"] = "market"
    time_in_force: Literal["GTC", "IOC", "FOK"] = "GTC"
    limit_offset_bps: float = Field(10.0, ge=0.0, le=1_000.0)
    closed_intents_kept: int = Field(256, ge=1, le=100_000)
    paper: bool = False
    fill_model: FillModelConfig = FillModelConfig()


class CircuitBreakerConfig(_Strict):
    """Guards the RL endpoint (docs/deployment.md)."""

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, le=1000)
    window_sec: float = Field(60.0, gt=0.0, le=86_400.0)
    failure_rate_threshold: float = Field(0.5, gt=0.0, le=1.0)
    minimum_calls: int = Field(10, ge=1, le=100_000)
    rate_window_calls: int = Field(100, ge=1, le=100_000)
    initial_timeout_sec: float = Field(30.0, gt=0.0, le=86_400.0)
    max_timeout_sec: float = Field(300.0, gt=0.0, le=86_400.0)
    backoff_multiplier: float = Field(2.0, ge=1.0, le=10.0)

    @model_validator(mode="after")
    def _timeouts_ordered(self) -> CircuitBreakerConfig:
        # CircuitBreaker refuses these too, but only at construction (not on a hot reload).
        if self.max_timeout_sec < self.initial_timeout_sec:
            raise ValueError(f"max_timeout_sec was {self.max_timeout_sec}, expected >= "
                             f"initial_timeout_sec ({self.initial_timeout_sec})")
        if self.minimum_calls < self.failure_threshold:
            raise ValueError(f"minimum_calls was {self.minimum_calls}, expected >= "
                             f"failure_threshold ({self.failure_threshold}): below "
                             "minimum_calls calls the count rule decides")
        if self.rate_window_calls < self.minimum_calls:
            raise ValueError(f"rate_window_calls was {self.rate_window_calls}, expected >= "
                             f"minimum_calls ({self.minimum_calls})")
        return self


class RLConfig(_Strict):
    """Optional RL model blended on top of the Phase 2 baseline."""

    enabled: bool = False
    use_mock: bool = False
    endpoint: str | None = None
    timeout_sec: float = Field(0.15, gt=0.0, le=60.0)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    max_rl_weight: float = Field(0.5, ge=0.0, le=1.0)
    mock_success_rate: float = Field(0.9, ge=0.0, le=1.0)
    mock_seed: int | None = None
    performance_history_size: int = Field(10_000, ge=10, le=10_000_000)
    max_response_bytes: int = Field(65_536, ge=256, le=16 * 1_048_576)
    warmup_timeout_sec: float = Field(1.0, gt=0.0, le=30.0)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Checked here, not at the first request: a bad port used to surface as a traceback
        # on every decision, under a reason (http_error) the troubleshooting table misreads.
        if value is not None:
            problem = http_url_problem(value)
            if problem is not None:
                raise ValueError(f"expected an http(s) URL with a host and a port in "
                                 f"0..65535, e.g. http://127.0.0.1:8888/predict ({problem})")
        return value


def _without_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``
    (``postgresql+psycopg://user:***@host/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def http_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the RL endpoint (None: an http(s) URL, host, port)."""
    if not url.isprintable() or any(c.isspace() for c in url):
        return "whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is not a number in 0..65535
    except ValueError as err:
        return str(err)
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
    if not parts.hostname:
        return "no host"
    return None


class ServiceConfig(_Strict):
    """The HTTP service (``himari-l3 serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # repr=False: a config printed or logged does not show it; `Layer3Config.public_dump`
    # (what journals and snapshots store) leaves it out.
    auth_token: str | None = Field(None, min_length=16, repr=False)
    protect_read_endpoints: bool = False
    max_request_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    max_signals_per_request: int = Field(1000, ge=1, le=100_000)
    body_read_timeout_sec: float = Field(10.0, gt=0.0, le=600.0)
    header_read_timeout_sec: float = Field(10.0, gt=0.0, le=600.0)
    config_watch_interval_sec: float = Field(1.0, gt=0.0, le=3600.0)

    def token_problem(self) -> str | None:
        """Why the token settings cannot serve (None: they can). Checked where the token is
        known — the file loader and the app — not by the model: a journaled config has no
        token (``Layer3Config.public_dump``) and must still parse on replay."""
        if self.protect_read_endpoints and self.auth_token is None:
            return ("service.protect_read_endpoints: true, but there is no token (set "
                    "service.auth_token or HIMARI_L3_AUTH_TOKEN): it would protect nothing")
        return None


class PersistenceConfig(_Strict):
    """Where decisions, outcomes and learned state are stored."""

    url: str = "sqlite:///himari_l3.sqlite"
    # SQLite only: "full" fsyncs the WAL on every commit (an acknowledged request survives a
    # power cut); "normal" survives a crash or SIGKILL of the process, not a power cut.
    sqlite_synchronous: Literal["full", "normal"] = "full"
    audit_decisions: bool = True
    snapshot_every_decisions: int = Field(1000, ge=1, le=1_000_000)
    snapshot_interval_sec: float = Field(30.0, gt=0.0, le=86_400.0)


class MetricsConfig(_Strict):
    """Prometheus metrics."""

    enabled: bool = True
    max_label_values: int = Field(64, ge=1, le=10_000)


_SYMBOL_KEY = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"


class StreamsConfig(_Strict):
    """The live loop over Redis Streams (``himari-l3 run``; docs/integration.md)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    input_stream: str = Field("l2:decisions", min_length=1, max_length=200)
    output_stream: str = Field("l3:decisions", min_length=1, max_length=200)
    output_channel: str = Field("l3:decisions", min_length=1, max_length=200)
    output_maxlen: int = Field(100_000, ge=100, le=100_000_000)
    consumer_group: str = Field("himari-l3", min_length=1, max_length=200)
    consumer_name: str | None = Field(None, min_length=1, max_length=200)
    dead_letter_stream: str = Field("l2:decisions:dead", min_length=1, max_length=200)
    dead_letter_maxlen: int = Field(100_000, ge=100, le=100_000_000)
    prices_key: str = Field("l1:prices", min_length=1, max_length=200)
    cascade_key: str = Field("l1:cascade:{symbol}", min_length=1, max_length=200)
    tick_ms: int = Field(5, ge=1, le=60_000)
    tick_max_messages: int = Field(500, ge=1, le=10_000)
    symbol_map: dict[str, str] = Field(default_factory=dict)
    default_strategy_id: str = Field("layer2", min_length=1, max_length=64)
    default_symbol: str | None = Field(None, min_length=1, max_length=64)
    max_signal_age_ms: int = Field(60_000, ge=1, le=86_400_000)
    hold_above_uncertainty: float = Field(0.8, ge=0.0, le=1.0)
    l1_max_age_ms: int = Field(10_000, ge=1, le=86_400_000)
    l1_missing_policy: Literal["neutral", "stressed"] = "stressed"
    netflow_compression: Literal["clip", "tanh"] = "clip"
    netflow_scale: float = Field(3.0, gt=0.0, le=50.0)
    claim_idle_ms: int = Field(30_000, ge=100, le=86_400_000)
    portfolio: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    lease_ttl_ms: int = Field(10_000, ge=500, le=600_000)

    @field_validator("symbol_map")
    @classmethod
    def _symbols(cls, value: dict[str, str]) -> dict[str, str]:
        # Both sides are symbols (no spaces, no control characters); the map must be
        # one-to-one so an output symbol maps back to exactly one Layer 2 symbol.
        for ext, internal in value.items():
            for s in (ext, internal):
                if not re.match(_SYMBOL_KEY, s):
                    raise ValueError(f"symbol {s!r} is not a symbol (letters, digits and "
                                     "._:/- only, at most 64 characters)")
        if len(set(value.values())) != len(value):
            raise ValueError("symbol_map must be one-to-one (two Layer 2 symbols map to one "
                             "Layer 3 symbol)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        if parts.password:
            # The config is journaled and snapshotted: a secret must not be in it.
            raise ValueError("a password in the URL would be stored with every config "
                             "change: give it in the environment (HIMARI_L3_REDIS_PASSWORD)")
        return value

    @field_validator("cascade_key")
    @classmethod
    def _per_symbol(cls, value: str) -> str:
        if "{symbol}" not in value:
            raise ValueError("expected a key pattern with {symbol}, e.g. l1:cascade:{symbol}")
        return value


class Layer3Config(_Strict):
    """The root of ``config/layer3.yaml``."""

    portfolio_value: float = Field(100_000.0, gt=0.0, le=1e13)
    sizing: SizingConfig = SizingConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    book: BookConfig = BookConfig()
    execution: OrderExecutionConfig = OrderExecutionConfig()
    trading_state: TradingStateConfig = TradingStateConfig()
    rl: RLConfig = RLConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    service: ServiceConfig = ServiceConfig()
    persistence: PersistenceConfig = PersistenceConfig()
    metrics: MetricsConfig = MetricsConfig()
    streams: StreamsConfig = StreamsConfig()

    def public_dump(self) -> dict[str, Any]:
        """The config as JSON data without its secrets — ``service.auth_token`` left out,
        a password in ``persistence.url`` masked — what the journal, snapshots, versions and
        state reads carry. Parsing it back gives the same config minus the secrets, which
        no decision reads (the running service keeps the ones it started with)."""
        data = self.model_dump(mode="json")
        for section, key in SECRET_KEY_PATHS:
            data[section].pop(key, None)
        data["persistence"]["url"] = _without_password(data["persistence"]["url"])
        return data

    @model_validator(mode="after")
    def _one_position_cap(self) -> Layer3Config:
        # Phase 2/3 give Phase 1 the portfolio's cap; a different sizing cap would be inert.
        s, p = self.sizing.limits.max_position_pct, self.portfolio.max_position_pct
        if s != p:
            raise ValueError(f"sizing.limits.max_position_pct was {s}, expected equal to "
                             f"portfolio.max_position_pct ({p}): Phase 2/3 use one position cap")
        return self
