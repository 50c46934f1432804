"""Encoding rendered frames: an MP4 file streamed frame by frame, and a GIF for TensorBoard.

The MP4 goes through imageio's ffmpeg plugin; imageio-ffmpeg's wheel bundles the ffmpeg
binary, so nothing has to be installed on the host or in the image. Frames are streamed to
the encoder as they come, so a long episode costs no memory. TensorBoard shows "videos" as
animated GIFs in an image summary; the GIF is built with Pillow from the finished MP4.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import numpy.typing as npt
from PIL import Image

from borg_game.envs import is_atari

Frame = npt.NDArray[np.uint8]

# Raw bytes of palette frames a GIF may hold. The GIF is built in memory (Pillow writes it in
# one go), so its length is bounded here: ~1500 Pong frames (100 s at 15 frames/s) or ~200
# CartPole frames. The MP4 always holds the whole recorded episode.
GIF_BUDGET_BYTES = 48 * 1024 * 1024
# Browsers draw GIF frames shorter than 20 ms at 100 ms, so faster games are subsampled.
GIF_MAX_FPS = 25.0


# The NTSC Atari 2600 draws 60 frames/s; ALE's env metadata says 30 for every ROM.
ATARI_FPS = 60.0


def frames_per_second(env: gym.Env[Any, Any]) -> float:
    """The real-time rate of the frames `env.render()` yields, one per step: game rate / frame skip."""
    if env.spec is not None and is_atari(env.spec.id):
        game_fps = ATARI_FPS
    else:
        game_fps = float(env.metadata.get("render_fps") or 30.0)
    try:
        frame_skip = int(env.get_wrapper_attr("frame_skip"))  # AtariPreprocessing's skip
    except AttributeError:
        frame_skip = 1
    return game_fps / frame_skip


def render_frame(env: gym.Env[Any, Any]) -> Frame:
    """The current screen of an env made with render_mode='rgb_array', (height, width, 3) uint8."""
    frame = env.render()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ValueError(
            f"render() of {env} gave {type(frame).__name__}, not an RGB array: make it with render_mode='rgb_array'"
        )
    return frame.astype(np.uint8, copy=False)


class Mp4Writer:
    """Streams RGB frames into an H.264 MP4 at their own resolution, written atomically.

    Frames go to a hidden temporary file next to `path`; `close()` renames it into place, so
    a reader never sees half a video. `discard()` drops it.
    """

    def __init__(self, path: Path, fps: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames = 0
        self._temporary = path.with_name(f".tmp-{path.name}")
        # macro_block_size=2: keep the native size (Pong's 210 rows are no multiple of 16, the
        # default would rescale); H.264 in yuv420p only needs even sides.
        self._writer = imageio.get_writer(
            self._temporary,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=2,
            ffmpeg_log_level="error",
            # veryfast: the same file size as x264's default (medium) for these flat screens, less CPU.
            ffmpeg_params=["-preset", "veryfast"],
        )

    def append(self, frame: Frame) -> None:
        """Encode one frame."""
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        self._writer.close()
        os.replace(self._temporary, self.path)
        return self.path

    def discard(self) -> None:
        """Stop encoding and delete what was written."""
        self._writer.close()
        self._temporary.unlink(missing_ok=True)


class GifAnimation:
    """Collects frames, subsampled to at most GIF_MAX_FPS and bounded in bytes, into a GIF.

    Frames are kept as palette images (one byte per pixel, quantized as they come): Atari and
    classic-control screens have far fewer than 256 colours, so nothing is lost.
    """

    def __init__(self, fps: float) -> None:
        self._stride = max(1, round(fps / GIF_MAX_FPS))
        self._duration_ms = round(1000.0 * self._stride / fps)
        self._frames: list[Image.Image] = []
        self._offered = 0
        self._bytes = 0

    def offer(self, frame: Frame) -> None:
        """Keep `frame` if it falls on the stride and the budget allows."""
        self._offered += 1
        if (self._offered - 1) % self._stride or self._bytes + frame.shape[0] * frame.shape[1] > GIF_BUDGET_BYTES:
            return
        image = Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        self._frames.append(image)
        self._bytes += frame.shape[0] * frame.shape[1]

    @property
    def frames(self) -> int:
        """How many frames the GIF holds."""
        return len(self._frames)

    def encode(self) -> bytes:
        """The animated GIF (looping), or b'' when no frame was kept."""
        if not self._frames:
            return b""
        buffer = io.BytesIO()
        first, *rest = self._frames
        first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=self._duration_ms, loop=0)
        return buffer.getvalue()


def gif_of_mp4(path: Path, fps: float) -> tuple[bytes, int, int]:
    """An MP4 read back as a GIF animation: (GIF bytes, height, width).

    Built from the finished file, so only videos that are kept pay for the GIF, and no frame
    is held in memory while an episode is recorded.
    """
    animation = GifAnimation(fps)
    height = width = 0
    for frame in iio.imiter(path, plugin="FFMPEG"):
        height, width = frame.shape[:2]
        animation.offer(np.asarray(frame, dtype=np.uint8))
    return animation.encode(), height, width
