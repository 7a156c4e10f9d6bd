"""API-format graphs for tests: the two-stage WAN 2.2 I2V pipeline with swappable loaders."""

from __future__ import annotations

import io
from pathlib import Path


def input_png(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A small deterministic PNG to use as the start image."""
    from PIL import Image

    img = Image.new("RGB", (width, height))
    img.putdata([((x * 4 + seed) % 256, (y * 4) % 256, (x * y + seed) % 256) for y in range(height) for x in range(width)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wan22_i2v(*, image: str, unet_high: str, unet_low: str, vae: str, text_encoder: str, lora: str | None = None,
              lora_strength: float = 1.0, unet_loader: str = "UNETLoader", te_loader: str = "WanTextEncoderLoader",
              prompt: str = "a cat walks across the street", negative: str = "blurry, static",
              width: int = 64, height: int = 64, length: int = 5, steps: int = 4, split: int = 2,
              seed: int = 42, fps: float = 8.0, shift: float = 8.0, prefix: str = "video/tiny") -> dict:
    """High-noise steps 0→split, low-noise split→steps, decode, CreateVideo, SaveVideo."""

    def unet(name: str) -> dict:
        inputs = {"unet_name": name}
        if unet_loader == "UNETLoader":
            inputs["weight_dtype"] = "default"
        return {"class_type": unet_loader, "inputs": inputs}

    g: dict[str, dict] = {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": te_loader, "inputs": {"clip_name": text_encoder}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["2", 0]}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "6": unet(unet_high),
        "7": unet(unet_low),
        "8": {"class_type": "WanImageToVideo", "inputs": {"positive": ["3", 0], "negative": ["4", 0], "vae": ["5", 0],
                                                          "width": width, "height": height, "length": length,
                                                          "batch_size": 1, "start_image": ["1", 0]}},
        "9": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["6", 0], "shift": shift}},
        "10": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["7", 0], "shift": shift}},
        "11": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["9", 0], "add_noise": "enable", "noise_seed": seed, "steps": steps, "cfg": 1.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["8", 0], "negative": ["8", 1],
            "latent_image": ["8", 2], "start_at_step": 0, "end_at_step": split, "return_with_leftover_noise": "enable"}},
        "12": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["10", 0], "add_noise": "disable", "noise_seed": seed, "steps": steps, "cfg": 1.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["8", 0], "negative": ["8", 1],
            "latent_image": ["11", 0], "start_at_step": split, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["5", 0]}},
        "14": {"class_type": "CreateVideo", "inputs": {"images": ["13", 0], "fps": fps}},
        "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 0], "filename_prefix": prefix, "format": "mp4",
                                                     "codec": "h264"}},
    }
    if lora:
        for node, model in (("16", "6"), ("17", "7")):
            g[node] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": [model, 0], "lora_name": lora,
                                                                      "strength_model": lora_strength}}
        g["9"]["inputs"]["model"] = ["16", 0]
        g["10"]["inputs"]["model"] = ["17", 0]
    return g


def probe_video(path: Path) -> dict:
    """Decode every frame of a video; return ``{frames, width, height, codec}``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        codec = stream.codec_context.name
    h, w = frames[0].shape[:2] if frames else (0, 0)
    return {"frames": len(frames), "width": w, "height": h, "codec": codec, "arrays": frames}
