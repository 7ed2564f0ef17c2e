from __future__ import annotations

import pickle

import pytest
from pydantic import ValidationError

from serve_app.config import AppArgs, DeploymentOptions, env_overrides, load_args
from serve_app.errors import NotReady, PayloadTooLarge, ServeAppError, TooManyPages


def test_env_overrides_nest_with_double_underscore() -> None:
    env = {
        "SERVE_APP_LIMITS__MAX_PAGES": "7",
        "OTHER": "x",
        "SERVE_APP_RECOGNIZER__DEPLOYMENT__MAX_ONGOING_REQUESTS": "3",
        # The scripts' own settings are not config overrides (an unknown key would be an error).
        "SERVE_APP_CONFIG": "serve_config.yaml",
        "SERVE_APP_LOCAL_S3": "0",
    }
    assert env_overrides(env) == {
        "limits": {"max_pages": "7"},
        "recognizer": {"deployment": {"max_ongoing_requests": "3"}},
    }
    args = load_args({"limits": {"max_pages": 50, "default_dpi": 150}}, environ=env)
    assert args.limits.max_pages == 7 and args.limits.default_dpi == 150
    assert args.recognizer.deployment.max_ongoing_requests == 3


def test_env_overrides_set_lists_and_dicts_as_json() -> None:
    env = {
        "SERVE_APP_LIMITS__URL_ALLOWLIST": '["127.0.0.1", "10.0.0.5"]',
        "SERVE_APP_LAYOUT__DEPLOYMENT__RAY_ACTOR_OPTIONS": '{"num_cpus": 0.5}',
        "SERVE_APP_RECOGNIZER__DEPLOYMENT__AUTOSCALING_CONFIG": '{"min_replicas": 1, "max_replicas": 3}',
    }
    args = load_args({"layout": {"deployment": {"ray_actor_options": {"num_cpus": 1}}}}, environ=env)
    assert args.limits.url_allowlist == ["127.0.0.1", "10.0.0.5"]
    assert args.layout.deployment.ray_actor_options == {"num_cpus": 0.5}
    assert args.recognizer.deployment.serve_options()["autoscaling_config"]["max_replicas"] == 3
    with pytest.raises(ValidationError, match="max_pags"):  # a misspelt setting is an error
        load_args({}, environ={"SERVE_APP_LIMITS__MAX_PAGS": "3"})
    with pytest.raises(ValueError):  # not JSON where a list is wanted
        load_args({}, environ={"SERVE_APP_LIMITS__URL_ALLOWLIST": "127.0.0.1"})


def test_unknown_keys_and_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"limits": {"max_page": 3}})
    with pytest.raises(ValidationError):
        AppArgs.model_validate({"limits": {"max_pages": 0}})
    with pytest.raises(ValidationError):
        DeploymentOptions(num_replicas=2, autoscaling_config={"min_replicas": 1})


def test_serve_options_carry_backpressure_and_scaling() -> None:
    opts = DeploymentOptions(max_queued_requests=4, retry_after_s=3).serve_options()
    assert opts["backpressure_config"] == {"status_code": 503, "retry_after_s": 3.0}
    assert opts["num_replicas"] == 1 and "autoscaling_config" not in opts
    assert "max_replicas_per_node" not in opts and "graceful_shutdown_timeout_s" not in opts  # Serve's own
    placed = DeploymentOptions(max_replicas_per_node=1, graceful_shutdown_timeout_s=90).serve_options()
    assert placed["ray_actor_options"]["runtime_env"] == {"env_vars": {"MALLOC_ARENA_MAX": "2"}}
    own = {"num_cpus": 1, "runtime_env": {"env_vars": {"MALLOC_ARENA_MAX": "4", "OMP_THREAD_LIMIT": "1"}}}
    kept = DeploymentOptions(ray_actor_options=own).serve_options()["ray_actor_options"]
    assert kept["runtime_env"]["env_vars"] == {"MALLOC_ARENA_MAX": "4", "OMP_THREAD_LIMIT": "1"}
    assert placed["max_replicas_per_node"] == 1 and placed["graceful_shutdown_timeout_s"] == 90


def test_the_vllm_recognizer_starts_with_the_models_own_dtype_and_drains_before_it_stops(make_args) -> None:
    rec = make_args(recognizer={"engine": "vllm", "model": "/models/x"}).recognizer
    assert rec.dtype == "auto"  # bf16 where the card has it, float16 on a T4 or V100
    assert rec.deployment.graceful_shutdown_timeout_s == 90
    assert rec.text_layer_ocr_tasks == ["table", "formula"]
    # A picture the VLM skips is not read from the layer either; the CPU readers read every region.
    vlm = make_args(recognizer={"engine": "vllm", "model": "/models/x"})
    assert vlm.text_layer_ocr_tasks == {"table", "formula", "figure"}
    reads = make_args(recognizer={"engine": "vllm", "model": "/models/x", "read_figures": True})
    assert reads.text_layer_ocr_tasks == {"table", "formula"} and make_args().text_layer_ocr_tasks == set()


def test_errors_pickle_with_their_fields_and_render_problem_json() -> None:
    for exc in (TooManyPages("201 pages"), NotReady("loading", retry_after_s=7.0)):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and back.detail == exc.detail
        assert back.retry_after_s == exc.retry_after_s
    body = TooManyPages("201 pages").problem("rid-1")
    assert body["status"] == 413 and body["type"].endswith("/too-many-pages")
    assert body["request_id"] == "rid-1" and body["detail"] == "201 pages"
    assert isinstance(TooManyPages("x"), PayloadTooLarge)
    assert ServeAppError("x").status == 500


def vlm_on_gpu(layout_gb: float, vlm_gb: float, **gpu) -> dict:
    return {
        "gpu": gpu,
        "layout": {"gpu_budget_gb": layout_gb, "deployment": {"ray_actor_options": {"num_gpus": 0.25}}},
        "recognizer": {
            "engine": "vllm",
            "model": "/models/PaddleOCR-VL",
            "gpu_budget_gb": vlm_gb,
            "deployment": {"ray_actor_options": {"num_gpus": 0.75}},
        },
    }


def test_vllm_memory_share_is_derived_from_the_budget_and_the_whole_card() -> None:
    args = load_args(vlm_on_gpu(2, 9, card_gb=16, limit_gb=12), environ={})
    assert args.recognizer.gpu_memory_utilization == pytest.approx(9 / 16)
    # The model itself derives it: building the settings any other way gives the same answer.
    assert AppArgs.model_validate(vlm_on_gpu(2, 9, card_gb=16)) == load_args(vlm_on_gpu(2, 9, card_gb=16), {})
    given = vlm_on_gpu(2, 9, card_gb=16)
    given["recognizer"]["gpu_memory_utilization"] = 0.5
    assert AppArgs.model_validate(given).recognizer.gpu_memory_utilization == 0.5


def test_budgets_over_their_share_of_the_card_or_its_limit_are_refused() -> None:
    # Ray may pack a layout replica (0.25) with the recognizer (0.75), or four layout replicas.
    with pytest.raises(ValidationError, match=r"layout: gpu_budget_gb 4 GB .* 0\.25 x 12 GB .* = 3 GB"):
        load_args(vlm_on_gpu(4, 9, card_gb=16, limit_gb=12), environ={})
    with pytest.raises(ValidationError, match=r"recognizer: gpu_budget_gb 13 GB .* = 12 GB"):
        load_args(vlm_on_gpu(4, 13, card_gb=16), environ={})
    with pytest.raises(ValidationError, match=r"gpu\.card_gb is not"):
        load_args({**vlm_on_gpu(2, 9), "gpu": None}, environ={})


def test_a_page_reading_profile_drops_the_layout_deployment_and_its_budget() -> None:
    config = vlm_on_gpu(8, 11, card_gb=16, limit_gb=12)  # layout's 8 GB would not fit; it is not deployed
    config["recognizer"] = {
        **config["recognizer"],
        "profile": "dots.ocr",
        "model": "/models/DotsOCR",
        "deployment": {"ray_actor_options": {"num_gpus": 1}},
    }
    args = load_args(config, environ={})
    assert not args.uses_layout
    assert args.recognizer.gpu_memory_utilization == pytest.approx(11 / 16)
    assert load_args(vlm_on_gpu(2, 9, card_gb=16), environ={}).uses_layout
    qwen_pages = {"engine": "vllm", "model": "/m", "profile": "qwen-vl", "whole_page": True}
    assert not load_args({"recognizer": qwen_pages}, environ={}).uses_layout


def test_profile_options_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValidationError, match="reads whole pages only"):
        dots = {"engine": "vllm", "model": "/m", "profile": "dots.ocr", "whole_page": False}
        load_args({"recognizer": dots})
    with pytest.raises(ValidationError, match="unknown prompt keys"):
        load_args({"recognizer": {"engine": "vllm", "model": "/m", "prompts": {"paragraph": "Read."}}})


def test_the_ingress_keeps_room_for_probes_beyond_its_document_limit() -> None:
    def ingress(documents: int, ongoing: int) -> dict:
        return {"ingress": {"max_documents": documents, "deployment": {"max_ongoing_requests": ongoing}}}

    tight = load_args(ingress(16, 16), environ={})
    assert tight.ingress.serve_options()["max_ongoing_requests"] == 32  # raised: probes get through
    assert load_args(ingress(8, 64), environ={}).ingress.serve_options()["max_ongoing_requests"] == 64


def test_a_job_lease_must_outlast_two_polls() -> None:
    with pytest.raises(ValidationError, match="poll_s"):
        AppArgs.model_validate({"jobs": {"lease_s": 10, "poll_s": 5}})
    assert AppArgs.model_validate({"jobs": {"lease_s": 10, "poll_s": 4}}).jobs.poll_s == 4


def two_vlms(first_gb: float, second_gb: float, num_gpus: float = 0.375) -> dict:
    """The users' 16 GB card (12 GB for models): a 2 GB layout, PaddleOCR-VL and dots.ocr."""
    config = vlm_on_gpu(2, first_gb, card_gb=16, limit_gb=12)
    share = {"ray_actor_options": {"num_gpus": num_gpus}}
    first = {**config["recognizer"], "served_model_name": "paddleocr-vl", "deployment": share}
    second = {"engine": "vllm", "model": "/models/DotsOCR", "profile": "dots.ocr", "gpu_budget_gb": second_gb,
              "deployment": share}  # fmt: skip
    return {**config, "recognizer": [first, second]}


def test_one_recognizer_mapping_is_still_a_list_of_one() -> None:
    args = load_args(vlm_on_gpu(2, 9, card_gb=16), environ={})
    assert list(args.recognizers) == ["PaddleOCR-VL"]  # its folder's name
    assert args.deployment_of("PaddleOCR-VL") == "Recognizer"
    assert list(load_args({}, environ={}).recognizers) == ["cpu"]


def test_a_list_of_recognizers_each_with_its_own_deployment_and_vllm_share() -> None:
    env = {"SERVE_APP_RECOGNIZER__MAX_NUM_SEQS": "4"}  # the environment sets the first (the default)
    args = load_args(two_vlms(4, 4), environ=env)
    assert list(args.recognizers) == ["paddleocr-vl", "DotsOCR"]
    assert [args.deployment_of(n) for n in args.recognizers] == ["Recognizer", "Recognizer-2"]
    first, second = args.recognizers.values()
    assert first.max_num_seqs == 4 and second.max_num_seqs == 128
    assert first.gpu_memory_utilization == second.gpu_memory_utilization == 0.25
    # The layout is deployed for the region reader; the page reader reads without it.
    assert args.uses_layout and args.text_layer_ocr_tasks == {"table", "formula", "figure"}


def test_recognizers_of_one_name_are_refused() -> None:
    same = {"engine": "vllm", "model": "/a/m"}
    with pytest.raises(ValidationError, match=r"names must differ.*\['m', 'm'\].*served_model_name"):
        load_args({"recognizer": [same, {**same, "model": "/b/m"}]}, environ={})
    with pytest.raises(ValidationError, match="names must differ"):
        load_args({"recognizer": [{"engine": "cpu"}, {"engine": "cpu"}]}, environ={})
    with pytest.raises(ValidationError):
        load_args({"recognizer": []}, environ={})


def test_recognizers_that_do_not_fit_the_card_together_swap_in_one_replica() -> None:
    # 2 + 4.5 + 4.5 = 11 GB fits the 12: both resident, each its own deployment.
    args = load_args(two_vlms(4.5, 4.5), environ={})
    assert args.swap_group == () and list(args.recognizer_deployments) == ["Recognizer", "Recognizer-2"]
    with pytest.raises(ValidationError, match=r"recognizer DotsOCR: gpu_budget_gb 5\.5 GB .* = 4\.5 GB"):
        load_args(two_vlms(4.5, 5.5), environ={})
    # 2 + 5 + 5.5 = 12.5 does not: one replica holds both, one awake at a time (2 + 5.5 fits).
    args = load_args(two_vlms(5, 5.5, num_gpus=0.5), environ={})
    assert args.swap_group == ("paddleocr-vl", "DotsOCR")
    assert [args.deployment_of(n) for n in args.recognizers] == ["Recognizer", "Recognizer"]
    assert list(args.recognizer_deployments["Recognizer"]) == ["paddleocr-vl", "DotsOCR"]
    assert all(r.sleeps_in_place for r in args.recognizers.values())  # on a GPU: vLLM's sleep mode
    # Only the resident ones and the largest swappable one must fit together.
    three = two_vlms(5, 5.5, num_gpus=0.5)
    three["recognizer"].insert(0, {"engine": "cpu"})
    assert load_args(three, environ={}).swap_group == ("paddleocr-vl", "DotsOCR")
    # The swap group's replica asks for its first recognizer's share: the others must fit in it.
    with pytest.raises(ValidationError, match=r"DotsOCR: gpu_budget_gb 9 GB .*first swappable one's"):
        load_args(two_vlms(5, 9, num_gpus=0.5), environ={})
    # A swapped-in member needs no share of its own (it is the first one's); a resident one does.
    three = two_vlms(4.5, 5.5, num_gpus=0.5)
    three["recognizer"].append({**three["recognizer"][1], "served_model_name": "qwen", "deployment": {}})
    assert load_args(three, environ={}).swap_group == ("DotsOCR", "qwen")
    resident = two_vlms(1, 1)
    resident["recognizer"][1]["deployment"] = {}
    with pytest.raises(ValidationError, match=r"DotsOCR: gpu_budget_gb is set but .*num_gpus is not"):
        load_args(resident, environ={})
    # Not even one at a time beside the layout: refused.
    with pytest.raises(ValidationError, match=r"gpu_budget_gb 13 GB .*not even one recognizer at a time"):
        load_args(two_vlms(5, 11, num_gpus=1.0), environ={})


def test_sleep_mode_is_for_gpus_and_swappable_can_be_asked_for() -> None:
    vlm = {"engine": "vllm", "model": "/models/m"}
    with pytest.raises(ValidationError, match="swap: sleep is vLLM's sleep mode, which needs CUDA"):
        load_args({"recognizer": {**vlm, "swap": "sleep"}}, environ={})
    second = {**vlm, "model": "/n", "swappable": True, "deployment": {"max_ongoing_requests": 3}}
    args = load_args({"recognizer": [{**vlm, "swappable": True}, second]}, environ={})
    assert args.swap_group == ("m", "n") and not any(r.sleeps_in_place for r in args.recognizers.values())
    # Each member holds the group replica's options: the first one's.
    assert args.recognizers["n"].deployment == args.recognizers["m"].deployment
