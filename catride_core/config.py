"""Typed parameters: the pydantic models of ``params.yaml`` and its only parser.

Every hyperparameter of the pipeline lives in ``params.yaml``, one section per
stage plus a shared ``base`` section. ``load_params`` validates the whole file
at once; any problem raises ``ParamsError`` whose message is a single line
naming the file and the key, e.g.
``params.yaml: pretrain.epochs: must be >= 1, got 0``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from catride_core import names
from catride_core.errors import ParamsError

# choices become Literal types, so a typo fails at load time with the key named
DatasetName = Literal[names.DATASETS]  # type: ignore[valid-type]
ArchName = Literal[names.ARCHITECTURES]  # type: ignore[valid-type]
MinerName = Literal[names.MINERS]  # type: ignore[valid-type]
AttackName = Literal[names.ATTACKS]  # type: ignore[valid-type]
DefenseName = Literal[names.DEFENSES]  # type: ignore[valid-type]
ModelName = Literal[names.MODELS]  # type: ignore[valid-type]


def _no_repeats(values: list[Any]) -> list[Any]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"names must not repeat; repeated: {', '.join(repeated)}")
    return values


# a list in which every entry names one thing (a model, an attack, a K): repeats are an error
Distinct = AfterValidator(_no_repeats)


def _not_a_boolean(value: Any) -> Any:
    # YAML's true/false would otherwise pass as 1/0 for a number (`epochs: true`, `recall_at: [true]`);
    # a ValueError, which pydantic reports with the key (a TypeError would be a traceback)
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")  # noqa: TRY004
    return value


# a number in a list, where YAML's true/false would otherwise pass as 1/0
NotBoolean = BeforeValidator(_not_a_boolean)


def _pixel_fraction(value: Any) -> Any:
    """Accept ``"77/255"`` as well as plain numbers, so budgets read as in papers."""
    _not_a_boolean(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"not a number or fraction like '8/255': {value!r}") from None
    return value


# A perturbation budget in [0, 1] pixel units, written as a number or "a/b".
PixelBudget = Annotated[float, BeforeValidator(_pixel_fraction), Field(ge=0.0, le=1.0)]


#: the largest seed: every generator of the project (torch, numpy) takes it
MAX_SEED = 2**32 - 1
#: the widest embedding: 16 times the published 512; a typo's billion would fail allocating the last layer
MAX_EMBEDDING_DIM = 8192


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are immutable, numbers are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        return value if annotation is bool or bool in get_args(annotation) else _not_a_boolean(value)


class BaseParams(Section):
    """Shared by every stage."""

    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of every random choice (splits, sampling, init, targets)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA when usable, else the CPU (every stage prints which); cuda = an error without"
    )
    precision: Literal["fp32", "bf16"] = Field("fp32", description="training's forward passes: float32 or bfloat16 autocast")
    cuda_fast: bool = Field(
        False, description="CUDA only: cuDNN autotuning and TF32 matmuls/convolutions (faster, not bit-reproducible); "
        "false = deterministic IEEE fp32",
    )
    num_workers: int | None = Field(
        None, ge=0, description="DataLoader workers where evaluation, attacks, sweep and examples read images; "
        "null = one per core for image-file datasets, none for in-memory ones (training: pretrain.num_workers)",
    )
    checkpoint_every: int | None = Field(
        None, ge=1, description="save a resumable training state every this many steps (null: at each epoch end)"
    )


class PrepareParams(Section):
    """Which data, and how it is split into train and test."""

    dataset: DatasetName = "mnist5k"
    root: str = Field(
        "data/raw", min_length=1,
        description="folder holding the user's copy of the dataset (absolute or relative to params.yaml)",
    )
    split: Literal["stratified", "class_disjoint"] = "stratified"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    max_per_class: int | None = Field(None, ge=2, description="keep a seeded subsample of at most this many items per class")
    decode_cache: bool = Field(
        False,
        description="also store every image decoded and resized once (decoded.npy, N x 3 x 256 x 256 bytes), "
        "which training and evaluation then read instead of the image files; image-file datasets only",
    )

    @field_validator("root")
    @classmethod
    def _no_tilde(cls, root: str) -> str:
        # DVC tracks this folder as prepare's dependency and, unlike a shell, does not expand "~"
        if root.startswith("~"):
            raise ValueError(f"write the folder without '~' (DVC does not expand it), e.g. {Path(root).expanduser()}")
        return root

    @field_validator("decode_cache")
    @classmethod
    def _decode_cache_needs_image_files(cls, decode_cache: bool, info: ValidationInfo) -> bool:
        dataset = info.data.get("dataset")  # absent when the dataset itself failed: that error comes first
        if decode_cache and dataset is not None and dataset not in names.IMAGE_FILE_DATASETS:
            raise ValueError(
                f"the {dataset} dataset is held in memory at 28 px and has no image files to decode; "
                f"the cache is for {', '.join(names.IMAGE_FILE_DATASETS)}; set decode_cache: false"
            )
        return decode_cache

    @model_validator(mode="after")
    def _folder_is_class_disjoint(self) -> PrepareParams:
        if self.dataset == "folder" and self.split != "class_disjoint":
            raise ValueError("the folder dataset is split class-disjoint (docs/method.md section 1); set split: class_disjoint")
        return self


class PretrainParams(Section):
    """Benign triplet training (docs/method.md section 3)."""

    arch: ArchName = "c2f2"
    embedding_dim: int = Field(512, ge=1, le=MAX_EMBEDDING_DIM)
    weights: str | None = Field(None, description="local ImageNet weights file for resnets; null = random init")
    epochs: int = Field(
        8, ge=0, description="benign epochs; 0: no pretraining, every model trains from the initialisation "
        "(random, or the ImageNet weights) for its whole schedule, as the published models were",
    )
    pairs_per_batch: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-7, ge=0.0)
    margin: float = Field(0.2, gt=0.0)
    miner: MinerName = "gradual_semihard"
    num_workers: int = Field(0, ge=0)


class EvaluateParams(Section):
    """Benign retrieval metrics (docs/method.md section 6)."""

    recall_at: Annotated[list[Annotated[int, NotBoolean, Field(ge=1)]], Distinct] = Field(
        default_factory=lambda: [1, 2, 4, 8], min_length=1
    )
    block_size: int = Field(1024, ge=1, description="queries ranked at once; bounds memory on big galleries")
    batch_size: int = Field(512, ge=1, description="images embedded at once")
    diagnostic_inverse_temperature: float = Field(
        10.0, ge=0.0, description="lambda of M_lambda in the collapseness diagnostic (the same for every model)"
    )
    nmi_seeds: int = Field(5, ge=1, description="k-means runs NMI is the mean of (seeds derived from base.seed)")


class AttackParams(Section):
    """The ranking attacks (docs/method.md section 5); defaults are RobRank's "rob28" budget."""

    names: Annotated[list[AttackName], Distinct] = Field(
        default_factory=lambda: list(names.ERS_ATTACKS), min_length=1,
        description="attacks to run: the nine of ERS, and gtm_ref, es_ref, ltm_ref (RobRank's own rules) to compare with its tables",
    )
    eps: PixelBudget = 77 / 255
    step_size: PixelBudget = 3 / 255
    steps: int = Field(32, ge=0)
    random_start: bool = False
    candidates_per_query: int = Field(1, ge=1, description="M: target candidates per attacked query of QA+/QA-")
    queries_per_candidate: int = Field(1, ge=1, description="W: target queries per attacked candidate of CA+/CA-")
    batch_size: int = Field(250, ge=1, description="queries attacked at once")
    max_queries: int | None = Field(250, ge=1, description="attack only the first N test images; null = all")
    save_images: int = Field(8, ge=0, description="adversarial images kept per attack for reports")


class RobustnessParams(Section):
    """Confidence intervals of the robustness scores: a bootstrap over the attacked queries (docs/method.md section 6.5)."""

    resamples: int = Field(1000, ge=2, le=100_000, description="bootstrap resamples; memory and time grow as resamples x queries")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="coverage of every interval")


class AdaptiveParams(Section):
    """The adaptive evaluation (docs/method.md section 11): the nine attacks run harder on a few spread test images."""

    queries: int = Field(30, ge=1, description="test images attacked, spread over the split (the gallery: the whole split)")
    steps: int = Field(20, ge=1, description="iterations of the adaptive engine (APGD) per run")
    restarts: int = Field(1, ge=0, description="further runs of the engine from seeded uniform points of the ball")
    surrogate: ModelName = Field("none", description="model whose perturbations are transferred (ES, CA+/-, QA+/-); "
                                 "one of `models`")
    unbounded_eps: PixelBudget = Field(1.0, description="budget of the check that an unbounded attack breaks retrieval")


class PretrainedParams(Section):
    """``pretrained``: the benign model as pretrained, fine-tuned for zero epochs; nothing to set."""


class ModelSection(Section):
    """What every trained model's own section may set."""

    train_batchnorm: bool = Field(
        False, description="train BatchNorm (running statistics and affine weights) instead of freezing it; "
        "resnets only (c2f2 has none); RobRank's 224 px EST model trains it",
    )


class BenignParams(ModelSection):
    """``none``: benign training, the undefended baseline trained as long as the others."""

    miner: MinerName = "gradual_semihard"


class DefenseSection(ModelSection):
    """An adversarial defense's section: its own inner PGD budget, where it differs from the shared one."""

    eps: PixelBudget | None = Field(None, description="inner PGD radius; null: finetune.eps")
    step_size: PixelBudget | None = Field(None, description="inner PGD step; null: finetune.step_size")
    steps: int | None = Field(None, ge=1, description="inner PGD iterations per batch; null: finetune.steps")


class ESTParams(DefenseSection):
    """EST (docs/method.md section 4.1): it re-mines randomly on adversarial embeddings, so it sets no miner."""


class ACTParams(DefenseSection):
    """ACT (docs/method.md section 4.2)."""

    miner: MinerName = "gradual_semihard"


class HMParams(DefenseSection):
    """Hardness manipulation (docs/method.md section 4.3); it mines semihard triplets by definition."""

    ics: bool = Field(True, description="add the intra-class structure (ICS) term")
    ics_weight: float = Field(0.5, ge=0.0, description="0.05 on SOP")
    stop_change_below: float = Field(1e-7, ge=0.0)


class TrideParams(DefenseSection):
    """TRIDE, the ablation of CA-TRIDE without the collapse-aware bound and brake (docs/method.md section 4.4)."""

    miner: MinerName = "gradual_semihard"
    ramp: Literal["progress", "epoch", "off"] = Field(
        "progress",
        description="step size alpha x share of training done (progress), alpha * t / T per epoch (epoch), alpha (off)",
    )
    extra_term: bool = Field(False, description="the authors' undocumented term, added to the training loss of every step")
    extra_weight: float = Field(0.5, ge=0.0)
    extra_margin: float = Field(0.04, ge=0.0)


class CATrideParams(TrideParams):
    """CA-TRIDE (docs/method.md section 4.4): TRIDE plus the collapse-aware bound and brake."""

    inverse_temperature: float = Field(10.0, ge=0.0, description="lambda of M_lambda: 10 CUB, 9.5 CARS, 2 SOP")
    stop_below: float | None = Field(1e-5, ge=0.0, description="stop a batch's PGD once its loss is below this")


class FinetuneParams(Section):
    """Adversarial fine-tuning from the pretrained model (docs/method.md section 4).

    The keys above the per-model sections are shared by every defense; each
    model's stage also reads its own section, so changing one defense's
    setting reruns that defense alone.
    """

    epochs: int = Field(3, ge=1)
    pairs_per_batch: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-7, ge=0.0)
    margin: float = Field(0.2, gt=0.0)
    eps: PixelBudget = 77 / 255
    step_size: PixelBudget = 3 / 255
    steps: int = Field(
        16, ge=1, description="inner PGD iterations per batch (without any, a defense would train on clean images only); "
        "a defense's own section may set its own eps, step_size and steps",
    )
    pretrained: PretrainedParams = PretrainedParams()
    none: BenignParams = BenignParams()
    est: ESTParams = ESTParams()
    act: ACTParams = ACTParams()
    hm: HMParams = HMParams()
    tride: TrideParams = TrideParams()
    ca_tride: CATrideParams = CATrideParams()


class ReportParams(Section):
    """The figures beyond the table: the eps sweep and the retrieval examples (docs/method.md section 9)."""

    sweep_eps: Annotated[list[PixelBudget], Distinct] = Field(
        default_factory=lambda: [0.0, 10 / 255, 30 / 255, 77 / 255], min_length=1,
        description="attack budgets of the robustness curves, in [0, 1] pixel units",
    )
    sweep_attacks: Annotated[list[AttackName], Distinct] = Field(
        default_factory=lambda: ["es", "ca_plus"], min_length=1, description="attacks of the robustness curves"
    )
    sweep_queries: int = Field(20, ge=1, description="test images attacked at each eps, spread over the split")
    example_queries: int = Field(4, ge=1, le=16, description="test queries shown in the retrieval examples")
    example_models: Annotated[list[ModelName], Distinct] = Field(
        default_factory=lambda: ["none", "ca_tride"], min_length=1,
        description="models shown in the retrieval examples, each one of `models`",
    )
    example_top_k: int = Field(5, ge=1, le=20, description="results shown per ranking")
    example_amplify: float = Field(
        4.0, gt=0.0, description="the perturbation inset shows 0.5 + amplify x (adversarial - clean)"
    )


class Params(Section):
    """The whole params.yaml."""

    base: BaseParams = BaseParams()
    prepare: PrepareParams = PrepareParams()
    pretrain: PretrainParams = PretrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    finetune: FinetuneParams = FinetuneParams()
    attack: AttackParams = AttackParams()
    robustness: RobustnessParams = RobustnessParams()
    adaptive: AdaptiveParams = AdaptiveParams()
    report: ReportParams = ReportParams()
    models: Annotated[list[ModelName], Distinct] = Field(default_factory=lambda: list(names.MODELS), min_length=1)

    @model_validator(mode="after")
    def _examples_of_compared_models(self) -> Params:
        # the examples stage reads models/<name>.pt, which no stage rewrites for a name outside `models`
        stale = [name for name in self.report.example_models if name not in self.models]
        if stale:
            raise _key_error(("report", "example_models"), f"{stale} not in models: no stage writes their "
                             "checkpoints (an old one would be shown); list models of `models`",
                             self.report.example_models)
        return self

    @model_validator(mode="after")
    def _surrogate_of_compared_models(self) -> Params:
        # the adaptive stage reads models/<surrogate>.pt, which only a model of `models` has
        if self.adaptive.surrogate not in self.models:
            raise _key_error(("adaptive", "surrogate"), f"{self.adaptive.surrogate!r} not in models: no stage "
                             "writes its checkpoint; name a model of `models`", self.adaptive.surrogate)
        return self


def _key_error(loc: tuple[str, ...], message: str, given: Any) -> ValidationError:
    """The error of one key found by a check across sections (raised as is, pydantic would name no key)."""
    detail = InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=given)
    return ValidationError.from_exception_data(Params.__name__, [detail])


def _describe(error: dict[str, Any]) -> str:
    """One readable phrase for a pydantic error, always ending with what was given."""
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, got {given!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {given!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{message[0].lower()}{message[1:]}, got {given!r}"


def parse_params(data: Any, source: str = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Validate already-parsed YAML; ``source`` names the file in errors.

    An error in a key that one of ``overrides`` (``--set`` arguments, already
    laid over ``data``) set names that override instead of the file.
    """
    check_sections(data, source)
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # a key is printed escaped, so that a newline in it cannot break the one-line message
        key = ".".join(str(part).encode("unicode_escape").decode() for part in first["loc"])
        setting = [text for text in overrides if key == (name := text.partition("=")[0].strip())
                   or key.startswith(name + ".")]
        where = f"--set {setting[-1]}" if setting else source
        raise ParamsError(f"{where}: {key}: {_describe(first)}") from None


def check_sections(data: Any, source: str) -> None:
    """A params file (or preset) is a mapping of sections: an empty file or a YAML list or text is named.

    Raises:
        ParamsError: naming ``source`` and what it holds instead.
    """
    if data is None:
        raise ParamsError(f"{source}: empty; a params file names at least the sections it changes")
    if not isinstance(data, dict):
        kind = "list" if isinstance(data, list) else type(data).__name__
        raise ParamsError(f"{source}: expected a mapping of sections, got a {kind}")


def parse_override(text: str) -> dict[str, Any]:
    """One ``--set section.key=value`` as the nested mapping it lays over params.yaml.

    The value is read as YAML (``8/255`` stays a string, which budgets accept;
    ``[es, ca_plus]`` is a list; ``null`` is None), so it means what it would
    mean written in params.yaml.

    Raises:
        ParamsError: not ``key=value``, an empty key part, or a value that is not YAML.
    """
    name, equals, value = text.partition("=")
    parts = name.strip().split(".")
    if not equals or not all(part.strip() for part in parts):
        raise ParamsError(f"--set {text}: expected section.key=value, e.g. attack.eps=8/255")
    try:
        parsed = yaml.load(value, _UniqueKeyLoader) if value.strip() else None
    except yaml.YAMLError:
        raise ParamsError(f"--set {text}: the value is not valid YAML") from None
    nested: Any = parsed
    for part in reversed(parts):
        nested = {part.strip(): nested}
    return nested


def load_params(path: str | Path | None = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Read and validate a params file, with ``--set section.key=value`` overrides laid over it.

    Args:
        path: the params file; None: no file, the defaults (those params.yaml lists).
        overrides: ``section.key=value`` strings, applied in order (a later one wins).

    Raises:
        ParamsError: missing file, bad YAML, unknown key, wrong type or out-of-range value
            (named by the file, or by the override that set it).
    """
    data: Any = {} if path is None else read_params_mapping(path)
    if overrides and isinstance(data, dict):
        for text in overrides:
            merge_overrides(data, parse_override(text))
    return parse_params(data, source="defaults" if path is None else str(path), overrides=overrides)


def read_params_mapping(path: str | Path) -> Any:
    """A params file's YAML as plain data, not validated (what DVC records as the file's params).

    Raises:
        ParamsError: the file cannot be read or is not valid YAML.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read params file ({exc.strerror})") from None
    try:
        return yaml.load(text, _UniqueKeyLoader)
    except _RepeatedKey as exc:
        raise ParamsError(f"{path}: line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ParamsError(f"{path}: not valid YAML{line}") from None


class _RepeatedKey(yaml.constructor.ConstructorError):
    """A key written twice in one mapping."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a repeated key: PyYAML would keep the last value, DVC refuses the file."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` lays a mapping under this one's keys: those may repeat it
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                break  # the base class says so
            if key in seen:
                raise _RepeatedKey(problem=f"{key!r} repeated (a key may appear once in a mapping)",
                                   problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section (nested mappings merge, values replace).

    ``base`` is updated in place (so a comment-keeping YAML mapping keeps its
    comments) and returned.
    """
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_overrides(base[key], value)
        else:
            base[key] = value
    return base


def dataset_root(root: str, params_path: str | Path) -> str:
    """``prepare.root`` as an absolute path; a relative one is taken from the params file's folder (as DVC does)."""
    path = Path(root)
    return str(path if path.is_absolute() else (Path(params_path).resolve().parent / path).resolve())


def resolved(params: Params, *sections: str) -> dict[str, Any]:
    """The named params sections as plain JSON-able data (what an output records it was made with)."""
    return {name: getattr(params, name).model_dump(mode="json") for name in sections}


def resolved_finetune(params: Params, model: str, start: dict[str, Any]) -> dict[str, Any]:
    """What a fine-tuned checkpoint records: its start's params plus the finetune keys ``model`` was made with.

    Those are the keys shared by every defense and the model's own section,
    not the other models' sections. ``pretrained`` is fine-tuned for zero
    epochs and records only its start's params and its name.

    Args:
        params: the validated params.
        model: a name of ``names.MODELS``.
        start: the params recorded in the starting checkpoint.
    """
    if model == names.PRETRAINED:
        return {**start, "finetune": {"model": model}}
    section = params.finetune.model_dump(mode="json")
    shared = {key: value for key, value in section.items() if key not in names.MODELS}
    return {**start, "finetune": {**shared, "model": model, model: section[model]}}


def read_params_document(path: str | Path) -> Any:
    """A YAML file as a mapping that writes back with its comments (ruamel round trip), for presets.

    Raises:
        ParamsError: the file cannot be read, is not valid YAML, or is not a mapping of sections.
    """
    from ruamel.yaml import YAML, YAMLError

    path = Path(path)
    try:
        data = YAML().load(path.read_text())
    except OSError as exc:
        raise ParamsError(f"{path}: cannot read ({exc.strerror})") from None
    except YAMLError:
        raise ParamsError(f"{path}: not valid YAML") from None
    check_sections(data, str(path))
    return data


def dump_params_document(data: Any) -> str:
    """The text of a mapping read by ``read_params_document``, comments kept."""
    import io

    from ruamel.yaml import YAML

    writer = YAML()
    writer.width = 120
    # null as `null`, as params.yaml writes it (ruamel's default leaves the value empty)
    writer.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    stream = io.StringIO()
    writer.dump(data, stream)
    return stream.getvalue()
