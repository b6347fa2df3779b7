"""Bad input as a new user meets it: every tool run as a real process, one table.

Each row of ``CASES`` runs one command in a folder of its own and must end with the expected exit status, exactly
one ``error:`` line naming the culprit, no traceback, and no new or changed file in that folder or in the shared
fixtures. The rows run a few at a time in one module fixture, so the table stays fast. Faults that must leave files
behind (a diverged run, a kill in the middle of a save, resume fallbacks) are in test_training_faults.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from train_utils import REPO, build_stub_cache, tiny_pretrain_config, write_config

TRAIN, FVD, CACHE = "tools/train.py", "tools/eval_fvd.py", "tools/build_text_cache.py"
GEN, FLEX = "tools/generate_video.py", "tools/flexify.py"
CAPTION = "a small red circle moves right slowly on a dark blue background"  # in the stub cache


@dataclass
class Case:
    """``args`` may name ``{case}`` (the row's own folder) and ``{shared}`` (read-only fixtures)."""

    id: str
    tool: str
    args: list[str]
    culprit: list[str]  # every string must be in the error line
    setup: Callable[[Path, Path], None] | None = None
    env: dict = field(default_factory=dict)
    status: int = 2


# ---- setups: each writes the row's input files into its folder ------------------------------------------------

def yaml_text(text: str | bytes):
    def setup(case: Path, shared: Path) -> None:
        (case / "run.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def config(**sections):
    """The tiny pretraining config with ``section={key: value}`` overrides (None deletes a key)."""
    def setup(case: Path, shared: Path) -> None:
        raw = tiny_pretrain_config(case / "out", shared / "cache.safetensors")
        for name, values in sections.items():
            if not isinstance(values, dict):
                raw[name] = values
                continue
            part = raw.setdefault(name, {})
            for k, v in values.items():
                part.pop(k) if v is None else part.__setitem__(k, v)
        write_config(case / "run.yaml", raw)
    return setup


def then(*setups):
    def setup(case: Path, shared: Path) -> None:
        for s in setups:
            s(case, shared)
    return setup


def bad_video_folder(case: Path, shared: Path) -> None:
    videos = case / "videos"
    videos.mkdir()
    (videos / "notes.txt").write_text("lorem ipsum dolor sit amet\n" * 400)  # ffmpeg renders it as a "video"
    (videos / "broken.mp4").write_bytes(b"\x00not an mp4" * 64)
    (case / "captions.csv").write_text("path,caption\nnotes.txt,a text file\nbroken.mp4,garbage\ngone.mp4,missing\n")


def run_dir(tags: list[str], latest: str, junk: bool = True):
    """An out dir whose checkpoints are unusable (``junk``): empty step folders, ``latest`` naming one."""
    def setup(case: Path, shared: Path) -> None:
        ckpt = case / "out" / "ckpt"
        for t in tags:
            (ckpt / t).mkdir(parents=True)
            if junk:
                (ckpt / t / "mp_rank_00_model_states.pt").write_bytes(b"half a file")
                (ckpt / t / "rng_rank0.pt").write_bytes(b"")
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "latest").write_text(latest + "\n")
    return setup


def distill(**d):
    return config(stage="distill", distill={"base_checkpoint": "{shared}/base", "modes": {"coarse_time": [2, 2, 2]},
                                            **d})


def fill_shared_paths(case: Path, shared: Path) -> None:
    cfg = case / "run.yaml"
    cfg.write_text(cfg.read_text().replace("{shared}", str(shared)))


def file_at(rel: str, content: bytes = b"x"):
    def setup(case: Path, shared: Path) -> None:
        (case / rel).parent.mkdir(parents=True, exist_ok=True)
        (case / rel).write_bytes(content)
    return setup


def export_copy(damage: Callable[[Path], None] | None = None):
    """A copy of the shared LoRA export at ``{case}/ck``, then ``damage(ck)``."""
    def setup(case: Path, shared: Path) -> None:
        shutil.copytree(shared / "flex", case / "ck")
        if damage is not None:
            damage(case / "ck")
    return setup


def truncate(rel: str, keep: float = 0.5):
    def damage(ck: Path) -> None:
        os.truncate(ck / rel, int((ck / rel).stat().st_size * keep))
    return damage


def edit_config(fn: Callable[[dict], None]):
    def damage(ck: Path) -> None:
        meta = json.loads((ck / "config.json").read_text())
        fn(meta)
        (ck / "config.json").write_text(json.dumps(meta))
    return damage


def _rank(meta: dict) -> None:
    meta["model"]["modes"]["coarse_time"]["rank"] = 8


RUN = ["--config", "{case}/run.yaml"]
# Generation on the shared tiny export with the stub text cache; every row must fail before the model loads.
G = ["--checkpoint", "{shared}/flex", "--text-cache", "{shared}/cache.safetensors", "--prompt", CAPTION, "--steps",
     "2", "--quiet"]
GO = [*G, "--output", "{case}/clip.mp4"]
GCK = ["--checkpoint", "{case}/ck", "--text-cache", "{shared}/cache.safetensors", "--prompt", CAPTION, "--steps", "2",
       "--quiet", "--output", "{case}/clip.mp4"]
F = ["--checkpoint", "{shared}/flex", "--modes", "coarse_space", "--lora-rank", "2"]
FAKE = ["--real", "synthetic:train", "--fake", "{shared}/fake.npz", "--quiet"]

CASES = [
    # --- train.py: the config file itself
    Case("train_empty_yaml", TRAIN, RUN, ["run.yaml", "is empty"], yaml_text("")),
    Case("train_comments_only", TRAIN, RUN, ["is empty"], yaml_text("# nothing here\n")),
    Case("train_yaml_syntax", TRAIN, RUN, ["not valid YAML", "line 3"], yaml_text("train:\n  lr: [1, 2\n")),
    Case("train_not_utf8", TRAIN, RUN, ["UTF-8"], yaml_text(b"\xff\xfe\x00\x81")),
    Case("train_yaml_list", TRAIN, RUN, ["YAML mapping"], yaml_text("- stage\n- pretrain\n")),
    Case("train_config_missing", TRAIN, ["--config", "{case}/nope.yaml"], ["file not found", "nope.yaml"]),
    Case("train_config_is_folder", TRAIN, ["--config", "{case}"], ["file not found"]),
    Case("train_unknown_key", TRAIN, RUN, ["train.stepz"], config(train={"stepz": 3})),
    Case("train_unknown_section", TRAIN, RUN, ["unknown key 'trian'"], config(trian={"steps": 3})),
    Case("train_bad_choice", TRAIN, RUN, ["train.precision", "fp32"], config(train={"precision": "fp64"})),
    Case("train_lr_string", TRAIN, RUN, ["train.lr", "float"], config(train={"lr": "fast"})),
    Case("train_lr_nan", TRAIN, RUN, ["train.lr", "finite"], config(train={"lr": float("nan")})),
    Case("train_lr_inf", TRAIN, RUN, ["train.lr", "finite"], config(train={"lr": float("inf")})),
    Case("train_lr_negative", TRAIN, RUN, ["train.lr", "> 0"], config(train={"lr": -1e-3})),
    Case("train_steps_zero", TRAIN, RUN, ["train.steps", ">= 1"], config(train={"steps": 0})),
    Case("train_steps_fraction", TRAIN, RUN, ["train.steps", "int"], config(train={"steps": 2.5})),
    Case("train_grad_clip_negative", TRAIN, RUN, ["train.grad_clip"], config(train={"grad_clip": -1.0})),
    Case("train_dropout_range", TRAIN, RUN, ["train.caption_dropout"], config(train={"caption_dropout": 1.5})),
    Case("train_max_skipped_zero", TRAIN, RUN, ["train.max_skipped_steps"], config(train={"max_skipped_steps": 0})),
    Case("train_zero_patch", TRAIN, RUN, ["model.patch_size", ">= 1"], config(model={"patch_size": [1, 0, 2]})),
    Case("train_patch_length", TRAIN, RUN, ["model.patch_size", "3 values"], config(model={"patch_size": [2, 2]})),
    Case("train_preset_clash", TRAIN, RUN, ["model.preset", "hidden_size: 128"], config(model={"hidden_size": 128})),
    Case("train_unknown_preset", TRAIN, RUN, ["model.preset", "huge"], config(model={"preset": "huge"})),
    Case("train_heads_divide", TRAIN, RUN, ["model.num_heads"],
         config(model={"preset": None, "hidden_size": 30, "depth": 1, "num_heads": 4})),
    Case("train_data_frames_zero", TRAIN, RUN, ["data.num_frames"], config(data={"num_frames": 0})),
    Case("train_data_fps_zero", TRAIN, RUN, ["data.fps"], config(data={"fps": 0})),
    Case("train_text_length_zero", TRAIN, RUN, ["text.max_length"], config(text={"max_length": 0})),
    Case("train_steps_flag", TRAIN, [*RUN, "--steps", "many"], ["--steps", "many"], config()),
    Case("train_unknown_flag", TRAIN, [*RUN, "--lr", "1"], ["unrecognized arguments", "--lr"], config()),
    Case("train_no_config_flag", TRAIN, [], ["--config"]),
    # --- train.py: files the config names
    Case("train_missing_cache", TRAIN, RUN, ["text cache not found", "absent.safetensors"],
         config(text={"cache_path": "absent.safetensors"})),
    Case("train_missing_ds_json", TRAIN, RUN, ["deepspeed_config", "zero9.json"],
         config(train={"deepspeed_config": "ds_configs/zero9.json"})),
    Case("train_video_root_missing", TRAIN, RUN, ["data.root not found"],
         config(data={"name": "video_folder", "root": "{case}/nowhere", "captions": "{case}/run.yaml"})),
    Case("train_video_folder_all_bad", TRAIN, RUN, ["no usable video among the 3", "captions.csv", "notes.txt"],
         then(bad_video_folder, config(data={"name": "video_folder", "root": "videos", "captions": "captions.csv"}))),
    Case("train_video_captions_empty", TRAIN, RUN, ["lists no videos"],
         then(file_at("videos/keep"), file_at("captions.csv", b"path,caption\n"),
              config(data={"name": "video_folder", "root": "videos", "captions": "captions.csv"}))),
    Case("train_distill_base_missing", TRAIN, RUN, ["distill.base_checkpoint not found", "no_base"],
         then(config(stage="distill", distill={"base_checkpoint": "no_base", "modes": {"c": [2, 2, 2]}}))),
    Case("train_distill_rank_zero", TRAIN, RUN, ["distill.lora_rank"],
         then(distill(lora_rank=0), fill_shared_paths)),
    Case("train_distill_mode_zero_patch", TRAIN, RUN, ["distill.modes.coarse_time", ">= 1"],
         then(distill(modes={"coarse_time": [0, 2, 2]}), fill_shared_paths)),
    # --- train.py: the run folder
    Case("train_nothing_to_resume", TRAIN, [*RUN, "--resume"], ["nothing to resume"], config()),
    Case("train_resume_all_damaged", TRAIN, [*RUN, "--resume"], ["no complete checkpoint", "step0000004"],
         then(config(), run_dir(["step0000002", "step0000004"], "step0000004"))),
    Case("train_resume_latest_gone", TRAIN, [*RUN, "--resume"], ["no complete checkpoint", "does not exist"],
         then(config(), run_dir([], "step0000004"))),
    Case("train_run_exists", TRAIN, RUN, ["already holds a run", "--resume"],
         then(config(), run_dir(["step0000002"], "step0000002"))),
    Case("train_distill_base_truncated", TRAIN, RUN, ["ck/model.safetensors", "truncated"],
         then(export_copy(truncate("model.safetensors")),
              config(stage="distill", distill={"base_checkpoint": "ck", "modes": {"coarse_space": [1, 4, 4]}}))),
    Case("train_init_from_truncated", TRAIN, RUN, ["ck/adapters/coarse_time.safetensors", "truncated"],
         then(export_copy(truncate("adapters/coarse_time.safetensors")), config(train={"init_from": "ck"}))),
    # --- generate_video.py: an unknown flag is named before the required --prompt it may have been meant as
    Case("gen_unknown_flag_first", GEN, ["--bogus"], ["unrecognized arguments: --bogus"]),
    # --- generate_video.py: numbers (nothing loads before they are checked)
    Case("gen_guidance_nan", GEN, [*GO, "--guidance-scale", "nan"], ["--guidance-scale", "finite"]),
    Case("gen_guidance_inf", GEN, [*GO, "--guidance-scale", "inf"], ["--guidance-scale", "finite"]),
    Case("gen_guidance_below_one", GEN, [*GO, "--guidance-scale", "0.5"], ["--guidance-scale", ">= 1"]),
    Case("gen_guidance_text", GEN, [*GO, "--guidance-scale", "high"], ["--guidance-scale", "high"]),
    Case("gen_shift_nan", GEN, [*GO, "--shift", "nan"], ["--shift", "finite"]),
    Case("gen_shift_negative", GEN, [*GO, "--shift", "-1"], ["--shift", "> 0"]),
    Case("gen_shift_zero", GEN, [*GO, "--shift", "0"], ["--shift", "> 0"]),
    Case("gen_fps_nan", GEN, [*GO, "--fps", "nan"], ["--fps", "finite"]),
    Case("gen_fps_zero", GEN, [*GO, "--fps", "0"], ["--fps", "> 0"]),
    Case("gen_fps_negative", GEN, [*GO, "--fps", "-5"], ["--fps", "> 0"]),
    Case("gen_fps_too_high", GEN, [*GO, "--fps", "1000"], ["--fps", "<= 100"]),
    Case("gen_steps_zero", GEN, [*GO, "--steps", "0"], ["--steps", ">= 1"]),
    Case("gen_steps_text", GEN, [*GO, "--steps", "ten"], ["--steps", "ten"]),
    Case("gen_compute_zero", GEN, [*GO, "--compute", "0"], ["--compute", "> 0"]),
    Case("gen_compute_above_one", GEN, [*GO, "--compute", "2"], ["--compute", "<= 1"]),
    Case("gen_compute_nan", GEN, [*GO, "--compute", "nan"], ["--compute", "finite"]),
    Case("gen_compute_and_schedule", GEN, [*GO, "--compute", "0.5", "--schedule", "full"], ["--schedule"]),
    Case("gen_batch_zero", GEN, [*GO, "--batch-size", "0"], ["--batch-size", ">= 1"]),
    Case("gen_seed_negative", GEN, [*GO, "--seed", "-1"], ["--seed", ">= 0"]),
    Case("gen_frames_zero", GEN, [*GO, "--num-frames", "0"], ["--num-frames", ">= 1"]),
    Case("gen_height_negative", GEN, [*GO, "--height", "-16"], ["--height", ">= 1"]),
    Case("gen_width_zero", GEN, [*GO, "--width", "0"], ["--width", ">= 1"]),
    Case("gen_device_bogus", GEN, [*GO, "--device", "bogus"], ["--device", "bogus"]),
    Case("gen_device_bad_index", GEN, [*GO, "--device", "cuda:x"], ["--device", "cuda:x"]),
    Case("gen_dtype_choice", GEN, [*GO, "--dtype", "fp8"], ["--dtype", "fp8"]),
    Case("gen_unknown_flag", GEN, [*GO, "--cfg", "3"], ["unrecognized arguments", "--cfg"]),
    # --- generate_video.py: the output path
    Case("gen_output_unwritable", GEN, [*G, "--output", "/proc/x.mp4"], ["--output", "cannot write in /proc"]),
    Case("gen_output_folder", GEN, [*G, "--output", "{case}/dir.mp4"], ["dir.mp4 is a folder"], file_at("dir.mp4/x")),
    Case("gen_output_parent_file", GEN, [*G, "--output", "{case}/f/clip.mp4"], ["is a file"], file_at("f")),
    Case("gen_output_suffix", GEN, [*G, "--output", "{case}/clip.avi"], ["unknown suffix '.avi'"]),
    Case("gen_output_exists", GEN, GO, ["clip.mp4 already exists", "--overwrite"], file_at("clip.mp4", b"mine")),
    Case("gen_sidecar_exists", GEN, GO, ["clip.json already exists", "--overwrite"], file_at("clip.json", b"{}")),
    Case("gen_numbered_output_exists", GEN, [*G[:4], "--prompts-file", "{case}/p.txt", "--output", "{case}/v.gif"],
         ["v-001.gif already exists"], then(file_at("p.txt", f"{CAPTION}\n{CAPTION}\n".encode()),
                                            file_at("v-001.gif", b"mine"))),
    # --- generate_video.py: prompts and files
    Case("gen_no_prompt", GEN, ["--checkpoint", "{shared}/flex"], ["--prompt"]),
    Case("gen_prompt_and_file", GEN, [*GO, "--prompts-file", "{case}/p.txt"], ["not allowed with"]),
    Case("gen_prompts_file_missing", GEN, [*G[:4], "--prompts-file", "{case}/p.txt", "--output", "{case}/a.mp4"],
         ["prompts file not found", "p.txt"]),
    Case("gen_prompts_file_blank", GEN, [*G[:4], "--prompts-file", "{case}/p.txt", "--output", "{case}/a.mp4"],
         ["has no prompts"], file_at("p.txt", b"\n  \n")),
    Case("gen_prompt_empty", GEN, [*G[:4], "--prompt", " ", "--output", "{case}/a.mp4"], ["prompt 0 is empty"]),
    Case("gen_prompt_not_cached", GEN, [*G[:4], "--prompt", "a purple cow", "--output", "{case}/a.mp4"],
         ["a purple cow"]),
    Case("gen_text_cache_missing", GEN, [*GO[:2], "--text-cache", "{case}/none.safetensors", *GO[4:]],
         ["none.safetensors"]),
    Case("gen_checkpoint_missing", GEN, [*GCK], ["no exported flexivid model", "ck"]),
    Case("gen_schedule_unknown_mode", GEN, [*GO, "--schedule", "blurry:2"], ["unknown mode 'blurry'"]),
    Case("gen_weights_truncated", GEN, GCK, ["ck/model.safetensors", "truncated"],
         export_copy(truncate("model.safetensors"))),
    Case("gen_weights_empty", GEN, GCK, ["ck/model.safetensors", "truncated"],
         export_copy(truncate("model.safetensors", 0.0))),
    Case("gen_adapter_truncated", GEN, GCK, ["ck/adapters/coarse_time.safetensors", "truncated"],
         export_copy(truncate("adapters/coarse_time.safetensors"))),
    Case("gen_rank_mismatch", GEN, GCK, ["rank-4 LoRA", "says rank 8", "config.json"],
         export_copy(edit_config(_rank))),
    Case("gen_config_json_broken", GEN, GCK, ["ck/config.json is not valid JSON"],
         export_copy(lambda ck: (ck / "config.json").write_text('{"model": '))),
    # --- flexify.py
    Case("flex_output_is_input", FLEX, ["--checkpoint", "{case}/ck", "--output", "{case}/ck"],
         ["is the --checkpoint itself", "--overwrite"], export_copy()),
    Case("flex_output_is_input_spelled_differently", FLEX, ["--checkpoint", "{case}/ck", "--output", "{case}/./ck/"],
         ["is the --checkpoint itself"], export_copy()),
    Case("flex_output_holds_model", FLEX, [*F, "--output", "{case}/ck"], ["already holds an exported model"],
         export_copy()),
    Case("flex_output_is_file", FLEX, [*F, "--output", "{case}/f"], ["is a file"], file_at("f")),
    Case("flex_output_parent_file", FLEX, [*F, "--output", "{case}/f/out"], ["is a file"], file_at("f")),
    Case("flex_output_unwritable", FLEX, [*F, "--output", "/proc/flexi"], ["cannot write in /proc"]),
    Case("flex_rank_zero", FLEX, [*F[:4], "--lora-rank", "0", "--output", "{case}/o"], ["--lora-rank", ">= 1"]),
    Case("flex_alpha_nan", FLEX, [*F, "--lora-alpha", "nan", "--output", "{case}/o"], ["--lora-alpha", "finite"]),
    Case("flex_mode_sizes", FLEX, [*F[:2], "--modes", "x=1,a", "--output", "{case}/o"], ["--modes x=1,a"]),
    Case("flex_mode_zero", FLEX, [*F[:2], "--modes", "x=0,2,2", "--output", "{case}/o"], ["--modes x=0,2,2"]),
    Case("flex_mode_unknown", FLEX, [*F[:2], "--modes", "blurry", "--output", "{case}/o"], ["blurry"]),
    Case("flex_checkpoint_missing", FLEX, ["--checkpoint", "{case}/none", "--output", "{case}/o"],
         ["no exported flexivid model"]),
    Case("flex_checkpoint_truncated", FLEX, ["--checkpoint", "{case}/ck", "--output", "{case}/o"],
         ["ck/model.safetensors", "truncated"], export_copy(truncate("model.safetensors"))),
    Case("flex_no_output", FLEX, ["--checkpoint", "{shared}/flex"], ["--output"]),
    # --- build_text_cache.py
    Case("cache_empty_yaml", CACHE, RUN, ["is empty"], yaml_text("")),
    Case("cache_captions_missing", CACHE, [*RUN, "--captions", "{case}/none.txt", "--output", "{case}/c.safetensors"],
         ["none.txt"], config()),
    # --- eval_fvd.py (sources are checked before the I3D detector loads or its cache is written)
    Case("fvd_device_bogus", FVD, [*FAKE, "--device", "bogus"], ["bogus", "cpu"]),
    Case("fvd_frames_zero", FVD, [*FAKE, "--num-frames", "0"], ["num_frames", ">= 1"]),
    Case("fvd_frames_few", FVD, [*FAKE, "--num-frames", "4"], ["num_frames 4", ">= 9"]),
    Case("fvd_one_real_clip", FVD, [*FAKE, "--num-real", "1"], ["num_real", ">= 2"]),
    Case("fvd_stride_zero", FVD, [*FAKE, "--stride", "0"], ["stride"]),
    Case("fvd_batch_zero", FVD, [*FAKE, "--batch-size", "0"], ["batch_size"]),
    Case("fvd_resize_choice", FVD, [*FAKE, "--resize", "nearest"], ["--resize", "nearest"]),
    Case("fvd_num_real_text", FVD, [*FAKE, "--num-real", "all"], ["--num-real", "all"]),
    Case("fvd_real_missing", FVD, ["--real", "{case}/none", "--fake", "{shared}/fake.npz"], ["none", "not an existing"]),
    Case("fvd_unknown_dataset", FVD, ["--real", "synthetic:val", "--fake", "{shared}/fake.npz"], ["synthetic:val"]),
    Case("fvd_fake_empty_folder", FVD, ["--real", "synthetic:train", "--fake", "{case}/empty"], ["empty"],
         file_at("empty/readme.txt")),
    Case("fvd_fake_corrupt_npz", FVD, ["--real", "synthetic:train", "--fake", "{case}/bad.npz"], ["bad.npz"],
         file_at("bad.npz", b"PK\x03\x04 truncated")),
    Case("fvd_output_folder", FVD, [*FAKE, "--output", "{case}"], ["--output"]),
    Case("fvd_output_not_json", FVD, [*FAKE, "--output", "{case}/fvd.txt"], ["--output", ".json"]),
    Case("fvd_output_unwritable", FVD, [*FAKE, "--output", "/proc/fvd.json"], ["--output", "cannot write in /proc"]),
    Case("fvd_output_parent_file", FVD, [*FAKE, "--output", "{case}/f/fvd.json"], ["is a file"], file_at("f")),
]


# ---- running the table ----------------------------------------------------------------------------------------

def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for dirpath, dirnames, files in os.walk(root):
            for name in dirnames + files:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns if p.is_file() else 0)
    return out


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Read-only inputs every row may use: the stub text cache, a tiny exported model, 2 tiny fake clips."""
    import numpy as np

    from flexivid.config import ModelConfig, TextConfig
    from flexivid.models.dit import FlexiVideoDiT
    from flexivid.models.modes import flexify, lora_specs
    from flexivid.models.serialization import ClipConfig, ExportSpec, save_model

    root = tmp_path_factory.mktemp("shared")
    build_stub_cache(root / "cache.safetensors")
    save_model(FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=32)), root / "base")
    flex = FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=32))
    flexify(flex, lora_specs({"coarse_time": (2, 2, 2)}, 4, None))
    spec = ExportSpec(text=TextConfig(encoder="minilm", max_length=8), clip=ClipConfig(4, 16, 16, 6.0))
    save_model(flex, root / "flex", spec)
    np.savez(root / "fake.npz", videos=np.zeros((2, 16, 32, 32, 3), np.uint8))
    return root


def _fill(arg: str, case: Path, shared: Path) -> str:
    return arg.replace("{case}", str(case)).replace("{shared}", str(shared))


def _run_case(c: Case, root: Path, shared: Path) -> tuple[subprocess.CompletedProcess, dict, dict]:
    case = root / c.id
    case.mkdir()
    if c.setup is not None:
        c.setup(case, shared)
    before = snapshot(case, shared)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), FLEXIVID_CACHE=str(case / "cache"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               **{k: _fill(v, case, shared) for k, v in c.env.items()})
    proc = subprocess.run([sys.executable, str(REPO / c.tool), *[_fill(a, case, shared) for a in c.args]],
                          cwd=case, env=env, capture_output=True, text=True, timeout=300)
    return proc, before, snapshot(case, shared)


@pytest.fixture(scope="module")
def results(shared, tmp_path_factory, request) -> dict:
    """Run the selected rows (all, or those ``-k`` keeps), three processes at a time."""
    selected = {item.callspec.params["case"].id for item in request.session.items
                if getattr(item, "originalname", None) == "test_bad_input" and item.module is request.module}
    root = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {c.id: pool.submit(_run_case, c, root, shared) for c in CASES if c.id in selected}
        return {k: f.result() for k, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, results, shared):
    proc, before, after = results[case.id]
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    assert proc.returncode == case.status, out[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for word in case.culprit:
        assert _fill(word, Path(), shared) in errors[0], (word, errors[0])
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:5]  # nothing written or touched


def test_unknown_flag_is_named_before_a_missing_required_one(capsys):
    from flexivid.errors import OneLineParser

    def parser():
        p = OneLineParser()
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--prompt")
        group.add_argument("--prompts-file")
        p.add_argument("-n", "--num-steps", type=int)
        return p

    for argv, named in ((["--bogus"], "--bogus"), (["--bogus=1", "-n", "3"], "--bogus"), (["-x"], "-x"),
                        (["--prompt", "a", "--num-stepz", "3"], "--num-stepz")):
        with pytest.raises(SystemExit) as e:
            parser().parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"error: unrecognized arguments: {named}"), (argv, err)
        assert err.count("\n") == 1 and "required" not in err
    with pytest.raises(SystemExit):  # known flags (abbreviated, short with its value attached): the real problem
        parser().parse_args(["--num-st", "3", "-n4"])
    assert "one of the arguments --prompt --prompts-file is required" in capsys.readouterr().err
    assert parser().parse_args(["--prompts", "f.txt", "-n5"]).num_steps == 5


def test_yaml_numbers_in_every_notation(tmp_path):
    from flexivid.config import load_config

    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-3\n  min_lr_ratio: .5\n  weight_decay: 2E-2\n"
                                     "  steps: 1e3\n  grad_clip: +1\n")
    t = load_config(tmp_path / "c.yaml").train
    assert (t.lr, t.min_lr_ratio, t.weight_decay, t.steps, t.grad_clip) == (1e-3, 0.5, 2e-2, 1000, 1.0)
    assert isinstance(t.steps, int) and isinstance(t.grad_clip, float)


def test_preset_fills_only_missing_sizes(tmp_path):
    from flexivid.config import load_config
    from flexivid.models.dit import FlexiVideoDiT

    (tmp_path / "c.yaml").write_text("model:\n  preset: tiny\n  hidden_size: 64\n  text_dim: 32\n")
    model = FlexiVideoDiT(load_config(tmp_path / "c.yaml").model)  # an explicit size equal to the preset's is fine
    assert (model.config.hidden_size, model.config.depth, model.config.num_heads) == (64, 2, 4)
