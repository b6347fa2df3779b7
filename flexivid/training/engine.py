"""The training loop for ``stage: pretrain`` and ``stage: distill``, on DeepSpeed (ZeRO 0-3), CPU or CUDA.

``train(cfg, config_path, resume)`` runs under the ``deepspeed`` launcher, ``torchrun``, or plain ``python`` (one
process: the rendezvous variables get single-process defaults). One optimizer step = ``train.grad_accum``
micro-batches of ``train.micro_batch_size`` clips on every rank:

    clip (B, 3, T, H, W) -> autoencoder.encode (no grad) -> x0 latents (B, C, T', H', W')
    caption -> text encoder (usually the safetensors cache) -> tokens (B, L, Dt), mask (B, L)
    DiffusionObjective: caption dropout, t, noise from the step's generator -> loss -> engine.backward/step

Pretraining regresses the flow velocity in ``full`` mode, from scratch or (``train.init_from``) from an exported
model's weights. Distillation (FlexiDiT LoRA variant) loads
``distill.base_checkpoint`` (its architecture; the YAML's ``model`` section is not used), ``flexify``-s it and
trains only each weak mode's LoRA + embed/de-embed + mode embedding to match the frozen ``full`` mode; the weak
mode of a step is drawn from ``distill.mode_weights`` with a (seed, step)-derived RNG, the same on every rank.
``distill.shared_weights`` is the paper's other variant: every parameter trains on the flow loss at a random mode
per step, ``full`` included.

All randomness is derived from (seed, step, rank), see ``batches``; checkpoints (``checkpoint``) hold DeepSpeed's
state + EMA, so ``resume`` continues bit-exactly on the CPU (on CUDA up to its nondeterministic kernels; see
docs/results.md). Every checkpoint also refreshes ``<out_dir>/export``.

Resuming on a different number of ranks converts the checkpoint to a DeepSpeed universal checkpoint first, which
restores weights, Adam moments, LR schedule, EMA and step; the global batch follows the new rank count
(``micro_batch_size * grad_accum * world``) and the data continues after the samples already consumed. That is
not bit-exact (other ranks draw other noise), and a warning line says so.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..config import Config, config_to_dict
from ..errors import UserFacingError
from ..launcher import launch_env
from ..models.attention import describe_backend
from ..models.dit import FlexiVideoDiT
from ..models.flops import forward_flops
from .batches import StepSampler, collate, step_generator, step_mode
from .checkpoint import (export_ema, export_spec, latest_tag, load_checkpoint, resume_point, save_checkpoint,
                         saved_world_size, to_universal)
from .deepspeed_config import resolve_precision, zero_stage
from .divergence import DivergenceGuard, TrainingDiverged, non_finite
from .ema import EMA
from .losses import DiffusionObjective
from .monitor import TrainMonitor
from .preflight import cache_command, preflight


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed_env() -> None:
    """Single-process rendezvous defaults for a plain ``python`` run (a launcher sets its own).

    DeepSpeed needs all five variables, or it falls back to MPI discovery (``No module named 'mpi4py'``).
    """
    rank, local_rank, world = launch_env()
    for key, value in (("RANK", rank), ("LOCAL_RANK", local_rank), ("WORLD_SIZE", world),
                       ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, str(value))
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(_free_port())


def _init_deepspeed(device: torch.device):
    import deepspeed

    if device.type == "cpu":
        # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce op with g++ (~60-100 s) on first use;
        # gloo's own collectives are enough here. (importlib: the attribute deepspeed.comm.torch is torch itself.)
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    else:
        torch.cuda.set_device(device)
    # DeepSpeed's LR schedulers warn "get learning rate ... before it has started" while setting their initial LR.
    deepspeed.utils.logger.addFilter(lambda record: "before it has started" not in record.getMessage())
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():  # our own init binds NCCL to this rank's GPU (DeepSpeed's would make it guess)
        try:
            dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
        except dist.DistNetworkError as e:
            if "address already in use" not in str(e).lower():
                raise
            port = os.environ.get("MASTER_PORT")
            raise UserFacingError(f"port {port} on {os.environ.get('MASTER_ADDR')} is taken (another run on this "
                                  f"host?); give this run its own port: deepspeed --master_port N ..., torchrun "
                                  f"--master_port N ..., or MASTER_PORT=N") from None
    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return deepspeed


def _mode_weights(cfg: Config) -> dict[str, float]:
    """Mode name -> sampling weight of the modes this run trains (uniform unless ``distill.mode_weights``)."""
    if cfg.stage == "pretrain":
        return {"full": 1.0}
    d = cfg.distill
    names = (["full"] if d.shared_weights else []) + list(d.modes)
    return {n: float(d.mode_weights.get(n, 0.0)) for n in names} if d.mode_weights else {n: 1.0 for n in names}


class Trainer:
    """One training run: builds everything in ``__init__``, trains in ``run``. See the module docstring."""

    def __init__(self, cfg: Config, config_path: str, resume: bool = False):
        self.cfg, self.config_path = cfg, config_path
        self.rank, self.local_rank, self.world = launch_env()
        self.device = torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        ds_config = preflight(cfg, config_path, self.world, self.device.type, resume)  # fail fast, before imports
        distributed_env()
        self.precision = resolve_precision(cfg.train.precision, self.device.type)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.out_dir = Path(cfg.train.out_dir)
        self.resume = resume
        from ..models.modes import trainable_summary

        deepspeed = _init_deepspeed(self.device)
        self.saved_world = saved_world_size(self.out_dir) if resume else None
        self.universal = self.saved_world not in (None, self.world)
        if self.universal:  # ZeRO shards load only on the world size that wrote them
            to_universal(self.out_dir)
            ds_config["checkpoint"] = {**ds_config.get("checkpoint", {}), "load_universal": True}
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = self._build_model()
        # Counted before ZeRO-3 partitions the parameters (then numel() is 0 on every rank).
        self.param_summary = trainable_summary(self.model)
        self.param_counts = (sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                             sum(p.numel() for p in self.model.parameters()))
        self.mode_weights = _mode_weights(cfg)
        objective = DiffusionObjective(
            self.model, "distill" if cfg.stage == "distill" and not cfg.distill.shared_weights else "flow",
            cfg.train.timestep_sampling, cfg.train.caption_dropout, self.dtype, timestep_loc=cfg.train.timestep_loc,
            timestep_scale=cfg.train.timestep_scale, timestep_shift=cfg.train.timestep_shift)
        self.trainable = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.engine, _, _, _ = deepspeed.initialize(model=objective, model_parameters=list(self.trainable.values()),
                                                    config=ds_config)
        self.zero_stage = zero_stage(ds_config)
        if self.zero_stage == 3 and hasattr(self.model, "null_text"):  # drop_text reads it outside forward
            deepspeed.zero.register_external_parameter(objective, self.model.null_text)
        if cfg.train.compile:
            if self.zero_stage == 3:
                raise ValueError("train.compile is not supported with ZeRO-3 (its parameter hooks break graphs); "
                                 "use ds_configs/zero2.json")
            self.model.compile_blocks()  # regional compilation: the DiT blocks are the compute
        self.ema = EMA(self.trainable, cfg.train.ema_decay)
        self._fresh: FlexiVideoDiT | None = None
        self._text_len: int | None = None
        self.position = (0, 0)  # (step, samples consumed) the run starts from; set by ``run`` on resume
        self.guard = DivergenceGuard(cfg.train.max_skipped_steps)
        self.dataset = None

    # ------------------------------------------------------------------------------------------- building
    def _build_model(self) -> FlexiVideoDiT:
        cfg = self.cfg
        if cfg.stage == "distill" and cfg.distill.diffusers_class:  # a diffusers transformer (integrations)
            from ..integrations.wan_training import build_wan_student

            return build_wan_student(cfg.distill)
        if cfg.stage == "pretrain":
            model = FlexiVideoDiT(cfg.model)
            if cfg.train.init_from:  # continued pretraining; preflight checked the architecture
                from ..models.serialization import load_model

                missing, unexpected = model.load_state_dict(load_model(cfg.train.init_from, modes=[]).state_dict(),
                                                            strict=False)
                # only the zero-initialised absolute-position projection may be new (model.abs_pos added)
                if unexpected or any(not k.startswith("pos_embed.") for k in missing):
                    raise RuntimeError(f"train.init_from {cfg.train.init_from} does not match the model: missing "
                                       f"{missing[:3]}, unexpected {unexpected[:3]}")
            return model
        from ..models.modes import flexify, lora_specs
        from ..models.serialization import load_model

        d = cfg.distill
        model = load_model(d.base_checkpoint, modes=[])
        flexify(model, lora_specs(d.modes, d.lora_rank, d.lora_alpha, shared=d.shared_weights))
        got = {n for n, p in model.named_parameters() if p.requires_grad}
        want = ({n for n, _ in model.named_parameters()} if d.shared_weights
                else {n for m in d.modes for n in model.mode_adapters.parameters_of(m)})
        if got != want:  # the LoRA variant must leave the base (and so the full mode) untouched
            raise RuntimeError(f"trainable parameters differ from the expected set: {sorted(got ^ want)[:4]}")
        return model

    def _fresh_model(self) -> FlexiVideoDiT:
        """A CPU fp32 model with this run's structure and frozen weights, for exports (built once)."""
        if self._fresh is None:
            with torch.random.fork_rng(devices=[]):  # building must not move the training RNG
                self._fresh = self._build_model()
        return self._fresh

    def _data(self, start_step: int, start_sample: int):
        from ..autoencoders import build_autoencoder
        from ..data import build_dataset
        from ..text import build_text_encoder

        cfg = self.cfg
        dataset = self.dataset = build_dataset(cfg.data)
        # precomputed clips carry their text embeddings
        self.text_encoder = None if cfg.data.name == "latents" else build_text_encoder(cfg.text, self.device)
        self.autoencoder = build_autoencoder(cfg.autoencoder)
        if isinstance(self.autoencoder, nn.Module):
            self.autoencoder.to(self.device).eval()
        sampler = StepSampler(len(dataset), cfg.seed, cfg.train.micro_batch_size, cfg.train.grad_accum, self.world,
                              self.rank, start_step, cfg.train.steps, start_sample)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                                           num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda")

    def _encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> ``(tokens (B, L, Dt) float32, mask (B, L) bool)`` on the device."""
        try:
            tokens, mask = self.text_encoder.encode(captions)
        except LookupError as e:  # text.UncachedCaptionError: name the command for THIS config
            raise ValueError(f"{e} (for this run: {cache_command(self.config_path)})") from None
        if tokens.shape[-1] != self.model.config.text_dim:
            raise ValueError(f"text encoder gives {tokens.shape[-1]}-d tokens but model.text_dim is "
                             f"{self.model.config.text_dim} (set model.text_dim in {self.config_path})")
        if self._text_len is None:  # for the FLOPs estimate; measured once to avoid a device sync per step
            self._text_len = max(1, round(mask.sum(1).float().mean().item()))
        return tokens.to(self.device, torch.float32), mask.to(self.device, torch.bool)

    def _inputs(self, batch: dict):
        """A batch -> ``(x0 latents, text tokens, text mask)`` on the device; precomputed clips skip the encoders."""
        if "latent" in batch:
            text, mask = batch["text"].to(self.device), batch["text_mask"].to(self.device)
            if self._text_len is None:
                self._text_len = text.shape[1]  # Wan attends to every (zero-padded) text position
            return batch["latent"].to(self.device).float(), text, mask
        with torch.no_grad():
            x0 = self.autoencoder.encode(batch["video"].to(self.device, non_blocking=True)).float()
        return (x0, *self._encode_text(batch["caption"]))

    def _step_flops(self, mode: str, latent_shape) -> float:
        """Estimated FLOPs of one optimizer step on one GPU (fwd + bwd = 3 x forward; teacher forward once)."""
        mcfg, b = self.model.config, self.cfg.train.micro_batch_size * self.cfg.train.grad_accum
        lora = self.model.mode_adapters.lora_rank(mode)
        flops = getattr(self.model, "forward_flops", None)  # diffusers models count their own architecture
        fwd = flops or (lambda m, *a: forward_flops(mcfg, self.model.modes[m], *a))
        fl = 3 * fwd(mode, latent_shape, self._text_len, b, lora)
        if self.engine.module.objective == "distill":
            fl += fwd("full", latent_shape, self._text_len, b, 0)
        return float(fl)

    # ----------------------------------------------------------------------------------------------- run
    def _start_record(self, start_step: int, start_sample: int) -> dict:
        return {"event": "start", "stage": self.cfg.stage, "world_size": self.world, "device": str(self.device),
                "precision": self.precision, "zero_stage": self.zero_stage, "start_step": start_step,
                "start_sample": start_sample, "checkpoint_world_size": self.saved_world,
                "trainable_params": self.param_counts[0], "total_params": self.param_counts[1],
                "modes": self.mode_weights, "model": config_to_dict(self.model.config),
                "config": config_to_dict(self.cfg)}

    def _fingerprints(self) -> list[str] | None:
        """Per-rank hash of the trainable weights (replicas must be identical); None under ZeRO-3 (sharded)."""
        if self.zero_stage == 3:
            return None
        h = hashlib.sha256()
        for n in sorted(self.trainable):
            h.update(self.trainable[n].detach().float().cpu().numpy().tobytes())
        out = [None] * self.world
        dist.all_gather_object(out, h.hexdigest()[:16])
        return out

    def _samples_per_step(self) -> int:
        return self.cfg.train.micro_batch_size * self.cfg.train.grad_accum * self.world

    def _checkpoint(self, step: int) -> None:
        bad = non_finite(self.ema.shadow)
        if bad:  # never save or export non-finite weights
            self._diverged(step, f"the EMA weights are non-finite ({', '.join(bad[:2])})")
        start_step, start_sample = self.position
        # Not step * G: the steps before a resume on another world size consumed another G per step.
        seen = start_sample + (step - start_step) * self._samples_per_step()
        client = {"step": step, "ema": self.ema.state_dict(), "data_position": {"step": step, "samples_seen": seen},
                  "world_size": self.world,
                  "seeds": "noise, timesteps, dropout and modes are derived from (seed, step, rank)"}
        save_checkpoint(self.engine, self.out_dir, step, client, self.cfg.train.keep_checkpoints)
        if self.rank == 0:
            export_ema(self._fresh_model(), self.ema, self.out_dir, export_spec(self.cfg, step))
        dist.barrier()

    def _train_steps(self, monitor: TrainMonitor) -> None:
        cfg, t = self.cfg, self.cfg.train
        start = self.position[0]
        batches = iter(self._data(*self.position))
        self._data_event(monitor)
        for step in range(start, t.steps):
            skipped_before = self.engine.skipped_steps
            mode = step_mode(cfg.seed, step, self.mode_weights)
            lr = self.engine.get_lr()[0]
            loss_sum = torch.zeros((), device=self.device)
            for k in range(t.grad_accum):
                x0, text, mask = self._inputs(next(batches))
                loss = self.engine(x0, text, mask, step_generator(cfg.seed, step, self.rank, k, self.device), mode)
                self.engine.backward(loss)
                self.engine.step()
                loss_sum += loss.detach()
            if self.zero_stage == 3:
                self._clear_zero3_grad_partitions()
            done = step + 1
            why = self.guard.check(loss_sum, self.engine.skipped_steps > skipped_before, self.world)
            if why is not None:
                self._diverged(done, why, monitor)
            self.ema.update(done)
            monitor.log_step(done, loss_sum / t.grad_accum, mode, self._step_flops(mode, x0.shape[1:]), lr)
            if done % t.ckpt_every == 0 or done == t.steps:
                self._checkpoint(done)

    def _diverged(self, step: int, why: str, monitor: TrainMonitor | None = None) -> None:
        last = latest_tag(self.out_dir)
        good = f"last good checkpoint: {self.out_dir / 'ckpt' / last}" if last else "no checkpoint was saved"
        if monitor is not None:
            monitor.event({"event": "diverged", "step": step, "reason": why, "last_good_checkpoint": last})
        raise TrainingDiverged(f"training diverged at step {step}: {why}; {good} (nothing after it was saved or "
                               f"exported); lower train.lr (now {self.cfg.train.lr:g}) and start again, or --resume "
                               f"from that checkpoint")

    def _data_event(self, monitor: TrainMonitor) -> None:
        """Log how many listed videos the dataset left out, and why (video_folder only)."""
        skipped = getattr(self.dataset, "skipped", None)
        if skipped is None:
            return
        line = f"data: {len(self.dataset)} videos"
        if skipped:
            line += f", {len(skipped)} skipped (first: {skipped[0][0]}: {skipped[0][1]}); see log.jsonl"
        monitor.event({"event": "data", "videos": len(self.dataset), "skipped": len(skipped),
                       "skipped_files": [{"path": p, "reason": r} for p, r in skipped]}, line)

    def _skip_summary(self) -> dict:
        """The end record's count of bad videos: left out when scanned, plus those that failed later to decode."""
        skipped = getattr(self.dataset, "skipped", None)
        if skipped is None:
            return {}
        later = getattr(self.dataset, "num_skipped", 0)  # counted in this process (num_workers: 0)
        return {"skipped_videos": len(skipped) + later}

    def _clear_zero3_grad_partitions(self) -> None:
        """Zero DeepSpeed ZeRO-3's reduced-gradient buffer after an optimizer step.

        ZeRO-3 keeps every parameter's gradient partition in one flat buffer that only the parameters used in a
        backward overwrite, and its optimizer step reads the whole buffer. A parameter unused in a step (the other
        weak mode's LoRA in a distillation) would get its last gradient applied again. Zeroing after each step
        gives ZeRO-1/2's result (tests/test_distill.py compares the two).
        """
        buf = getattr(self.engine.optimizer, "grad_partitions_flat_buffer", None)
        if buf is not None:
            buf.zero_()

    def _world_change_warning(self, start: int, start_sample: int) -> str:
        return (f"warning: resuming the {self.saved_world}-rank checkpoint of step {start} on {self.world} rank(s) via "
                f"a DeepSpeed universal checkpoint ({self.out_dir / 'ckpt' / 'universal'}): weights, Adam moments, LR "
                f"schedule, EMA and step restored; global batch now {self._samples_per_step()} clips per step, data "
                f"continues at clip {start_sample} (not bit-exact with an uninterrupted {self.saved_world}-rank run)")

    def run(self) -> Path:
        t = self.cfg.train
        start, start_sample = 0, 0
        if self.resume:
            tag, passed_over = resume_point(self.out_dir)
            if passed_over and self.rank == 0:
                tqdm.write(f"warning: resuming from {self.out_dir / 'ckpt' / tag}, the newest complete checkpoint "
                           f"({'; '.join(passed_over)})", file=sys.stderr)
            client = load_checkpoint(self.engine, self.out_dir, self.universal)
            self.ema.load_state_dict(client["ema"])
            start, start_sample = int(client["step"]), int(client["data_position"]["samples_seen"])
        self.position = (start, start_sample)
        monitor = TrainMonitor(self.out_dir, t.steps, start, t.log_every, self.rank, self._samples_per_step(),
                               self.device, list(self.mode_weights))
        if self.resume:  # the steps after the checkpoint belong to the interrupted run: they are redone
            monitor.drop_after(start)
        try:
            if self.universal and self.rank == 0:
                tqdm.write(self._world_change_warning(start, start_sample))
            monitor.event(self._start_record(start, start_sample),
                          f"{self.cfg.stage}: {self.param_summary} | {self.world} rank(s) on "
                          f"{self.device.type} | {self.precision} | ZeRO-{self.zero_stage} | "
                          f"{describe_backend(getattr(self.model.config, 'attention_backend', 'auto'), self.device)}")
            self._train_steps(monitor)
            if start >= t.steps and self.rank == 0:  # resumed a finished run: refresh the export only
                export_ema(self._fresh_model(), self.ema, self.out_dir, export_spec(self.cfg, start))
            prints = self._fingerprints()
            monitor.event({"event": "end", "step": max(start, t.steps), "replica_fingerprints": prints,
                           "replicas_identical": None if prints is None else len(set(prints)) == 1,
                           "export": str(self.out_dir / "export"), **self._skip_summary()},
                          f"done: {max(start, t.steps)} steps; exported to {self.out_dir / 'export'}"
                          + (f"; {self._skip_summary()['skipped_videos']} video(s) skipped (see log.jsonl)"
                             if self._skip_summary().get("skipped_videos") else ""))
        finally:  # close the bar before an error message is printed
            monitor.close()
        return self.out_dir / "export"


def train(cfg: Config, config_path: str, resume: bool = False) -> Path:
    """Run training for ``cfg`` (see the module docstring); returns the export directory."""
    try:
        return Trainer(cfg, config_path, resume).run()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
