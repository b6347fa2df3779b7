"""flexivid.autoencoders: the pixel identity and a diffusers VAE applied frame-wise with latent scaling."""
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from flexivid.autoencoders import DiffusersVAE, PixelAutoencoder, build_autoencoder
from flexivid.config import AutoencoderConfig, ConfigError


def test_pixel_round_trip_is_identity():
    ae = build_autoencoder(AutoencoderConfig(kind="pixel"))
    assert isinstance(ae, PixelAutoencoder)
    assert (ae.latent_channels, ae.spatial_factor, ae.temporal_factor) == (3, 1, 1)
    video = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    assert torch.equal(ae.decode(ae.encode(video)), video)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        ae.encode(video[0])


def test_vae_without_diffusers_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if not installed, whether or not it is
    with pytest.raises(ImportError, match="pip install diffusers"):
        DiffusersVAE(str(tmp_path))
    with pytest.raises(ConfigError, match="autoencoder.path"):
        build_autoencoder(AutoencoderConfig(kind="vae"))


class _FakeKL(torch.nn.Module):
    """Stands in for diffusers.AutoencoderKL: 4x average-pool 'encoder', nearest-upsample 'decoder', 4 channels."""

    def __init__(self, shift_factor):
        super().__init__()
        self.config = types.SimpleNamespace(latent_channels=4, block_out_channels=[8, 16, 32],
                                            scaling_factor=0.5, shift_factor=shift_factor)
        self.dtype = torch.float32
        self.calls = []

    @classmethod
    def from_pretrained(cls, path, subfolder=None, local_files_only=False):
        assert local_files_only  # never touch the hub
        model = cls(shift_factor=0.25)
        model.loaded_from = (path, subfolder)
        return model

    def encode(self, x):
        self.calls.append(x.shape)
        pooled = F.avg_pool2d(x, 4)
        z = torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)
        return types.SimpleNamespace(latent_dist=types.SimpleNamespace(mode=lambda: z, sample=lambda: z))

    def decode(self, z):
        return types.SimpleNamespace(sample=F.interpolate(z[:, :3], scale_factor=4, mode="nearest"))


@pytest.fixture()
def fake_diffusers(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", types.SimpleNamespace(AutoencoderKL=_FakeKL))


def test_vae_frame_wise_scaling(fake_diffusers, tmp_path):
    (tmp_path / "vae").mkdir()  # a pipeline folder: the VAE is found in its vae/ subfolder
    vae = build_autoencoder(AutoencoderConfig(kind="vae", path=str(tmp_path)))
    assert vae.vae.loaded_from == (str(tmp_path), "vae")
    assert (vae.latent_channels, vae.spatial_factor, vae.temporal_factor) == (4, 4, 1)
    assert (vae.scaling_factor, vae.shift_factor) == (0.5, 0.25)
    video = torch.rand(2, 3, 5, 16, 24) * 2 - 1
    latents = vae.encode(video)
    assert latents.shape == (2, 4, 5, 4, 6)
    # Frame t of clip b is encoded on its own, then shifted and scaled.
    expected = (F.avg_pool2d(video[1, :, 3][None], 4)[0] - 0.25) * 0.5
    torch.testing.assert_close(latents[1, :3, 3], expected)
    decoded = vae.decode(latents)
    assert decoded.shape == video.shape
    torch.testing.assert_close(decoded[0, :, 2], F.interpolate(F.avg_pool2d(video[0, :, 2][None], 4), scale_factor=4)[0])
    with pytest.raises(ValueError, match="divisible by 4"):
        vae.encode(video[..., :15, :])


def test_vae_scaling_override_and_chunks(fake_diffusers, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    vae = DiffusersVAE(str(tmp_path), scaling_factor=2.0, frame_chunk=3)
    assert vae.vae.loaded_from == (str(tmp_path), None) and vae.scaling_factor == 2.0
    latents = vae.encode(torch.zeros(2, 3, 4, 8, 8))
    assert [s[0] for s in vae.vae.calls] == [3, 3, 2]  # 8 frames in chunks of 3
    torch.testing.assert_close(latents, torch.full_like(latents, -0.5))  # (0 - 0.25) * 2
    with pytest.raises(FileNotFoundError, match="autoencoder.path"):
        DiffusersVAE(str(tmp_path / "missing"))
