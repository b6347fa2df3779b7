#!/usr/bin/env python
"""Precompute Wan latents and text embeddings of a video folder with YOUR Wan VAE and T5 (flexivid ships neither).

    python tools/precompute_wan_latents.py --wan /models/Wan2.1-T2V-1.3B-Diffusers \\
        --videos my_videos/ --captions my_videos/captions.csv --output data/wan_clips

``--wan`` is a local diffusers Wan pipeline folder (``vae/``, ``text_encoder/``, ``tokenizer/``; the transformer is
not loaded). ``--captions`` is CSV (``path,caption``) or JSONL, as ``data.name: video_folder`` reads it. Each clip
(``--num-frames`` frames, resized and centre-cropped to ``--height`` x ``--width``) becomes
``<output>/<index>.safetensors`` (``flexivid.data.latents``):

* ``latent``: ``vae.encode(video).latent_dist.mode()``, normalised by the VAE's ``latents_mean`` / ``latents_std``
  exactly as ``WanPipeline`` un-normalises before decoding;
* ``text`` / ``text_mask``: ``WanPipeline.encode_prompt`` (T5 tokens, zero after the prompt, 512 positions), the
  same tensors the pipeline feeds the transformer at sampling time.

Files are written atomically and existing ones are kept, so an interrupted run continues where it stopped.
Then train with ``data: {name: latents, root: <output>}`` (configs/distill_wan2.1_1.3b.yaml).
"""
import argparse
import sys
from pathlib import Path

import torch


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wan", required=True, help="diffusers Wan pipeline folder (vae/, text_encoder/, tokenizer/)")
    ap.add_argument("--videos", required=True, help="folder of videos")
    ap.add_argument("--captions", required=True, help="CSV (path,caption) or JSONL captions file")
    ap.add_argument("--output", required=True, help="folder for the clip files")
    ap.add_argument("--num-frames", type=int, default=81, help="pixel frames per clip (4k + 1)")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--frame-stride", type=int, default=1)
    ap.add_argument("--max-sequence-length", type=int, default=512, help="T5 positions (WanPipeline's default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args(argv)
    if a.num_frames < 1 or a.num_frames % 4 != 1:
        ap.error(f"--num-frames must be 4k + 1 for Wan's VAE (e.g. 81), got {a.num_frames}")
    for name in ("height", "width"):
        if getattr(a, name) < 16 or getattr(a, name) % 16:
            ap.error(f"--{name} must be a multiple of 16 (Wan's VAE x patch), got {getattr(a, name)}; coarse_space "
                     f"(1, 4, 4) needs multiples of 32")
    if not (Path(a.wan) / "model_index.json").is_file():
        ap.error(f"--wan {a.wan} is not a diffusers pipeline folder (no model_index.json)")
    return a


@torch.no_grad()
def main(argv=None) -> int:
    a = parse_args(argv)
    from diffusers import AutoencoderKLWan, WanPipeline

    from flexivid.config import DataConfig
    from flexivid.data.latents import write_clip
    from flexivid.data.video_folder import VideoFolderDataset

    try:
        data = VideoFolderDataset(DataConfig(name="video_folder", root=a.videos, captions=a.captions,
                                             num_frames=a.num_frames, height=a.height, width=a.width,
                                             frame_stride=a.frame_stride))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dtype = torch.bfloat16 if a.device.startswith("cuda") else torch.float32
    # The VAE in float32 (as Wan's own examples run it), the T5 in bf16 on the GPU; the transformer is not loaded.
    vae = AutoencoderKLWan.from_pretrained(a.wan, subfolder="vae", torch_dtype=torch.float32, local_files_only=True)
    pipe = WanPipeline.from_pretrained(a.wan, vae=vae, transformer=None, torch_dtype=dtype,
                                       local_files_only=True).to(a.device)
    mean = torch.tensor(vae.config.latents_mean, device=a.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=a.device).view(1, -1, 1, 1, 1)
    out = Path(a.output)
    written = kept = 0
    for i in range(len(data)):
        path = out / f"{i:06d}.safetensors"
        if path.exists():
            kept += 1
            continue
        try:
            item = data[i]
        except RuntimeError as e:  # every video is unreadable
            print(f"error: {e}", file=sys.stderr)
            return 2
        if i in data._bad:  # the dataset stood in the next readable video: it gets its own file at its own index
            continue
        video = item["video"][None].to(a.device, vae.dtype)  # (1, 3, T, H, W) in [-1, 1]
        latent = (vae.encode(video).latent_dist.mode().float() - mean) / std  # (1, 16, (T-1)/4+1, H/8, W/8)
        text, _ = pipe.encode_prompt(item["caption"], do_classifier_free_guidance=False,
                                     max_sequence_length=a.max_sequence_length, device=a.device)
        ids = pipe.tokenizer(item["caption"], padding="max_length", max_length=a.max_sequence_length, truncation=True,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        write_clip(path, latent[0], text[0], ids.attention_mask[0].bool(), item["caption"])
        written += 1
    print(f"{written} clips written, {kept} already there, {data.num_skipped} unreadable videos skipped -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
