"""Benchmark: ``boneimg info`` on a big pyramidal OME-TIFF.

Acceptance target (foundation issue): ``boneimg info`` on a generated pyramidal OME-TIFF of
40,000 x 40,000 px answers in under 2 s with under 300 MB peak memory.

Usage::

    python benchmarks/bench_info_pyramid.py [--size 40000] [--workdir DIR] [--keep] [--runs 3] [--cold]

What it does:

1. Generates (once; reused while it is present in the work directory) a pyramidal OME-TIFF:
   RGB uint8, ``size`` x ``size`` px, 512 x 512 JPEG tiles (YCbCr 2x2, like slide scanners
   write), BigTIFF, reduced levels as SubIFDs down to < 1024 px, OME PhysicalSizeX/Y 0.25 µm.
   Every level is written from a generator of tiles, so the full image is never in memory.
   The pattern is synthetic "tissue" (a few precomputed H&E-like tiles, flipped/rotated)
   inside a few elliptical sections on a blank slide background.
2. Runs ``boneimg info FILE`` ``--runs`` times, each in a fresh process, and reports its wall
   time and peak resident memory. Peak memory is the child's own ``ru_maxrss`` as the kernel
   reports it to the parent through ``os.wait4`` (exact, per child process, no polling);
   wall time is measured around the launch-to-exit of that process.
3. Measures, in this process, ``import boneimg``, ``bi.load(FILE)`` and reading one
   1024 x 1024 region of level 0 (``img.data[y:y+1024, x:x+1024].compute()``).

It always exits 0 (a benchmark, not a test) but prints PASS/FAIL per target. MB here are
10**6 bytes. The file is deleted afterwards unless ``--keep`` is given (or ``--workdir`` names
a folder, which is taken as a cache).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

TILE = 512
PIXEL_SIZE_UM = 0.25
TARGET_WALL_S = 2.0
TARGET_RSS_MB = 300.0
N_VARIANTS = 12
JPEG_QUALITY = 85
# Elliptical "sections" on the slide, in fractions of the image: (cy, cx, ry, rx).
SECTIONS = ((0.30, 0.28, 0.22, 0.18), (0.32, 0.72, 0.20, 0.20), (0.72, 0.50, 0.20, 0.34))


# --------------------------------------------------------------------------------------------
# Test file generation
# --------------------------------------------------------------------------------------------


def level_shapes(size):
    """Shapes of the pyramid levels: halving until the larger side is < 1024 px."""
    shapes = [(size, size)]
    while max(shapes[-1]) >= 1024:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def make_tiles(seed=0):
    """A blank-slide tile and N_VARIANTS H&E-like tissue tiles (512 x 512 RGB uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    background = np.empty((TILE, TILE, 3), np.uint8)
    background[...] = (242, 241, 239)
    stroma = np.array([232.0, 168.0, 200.0])  # eosin pink
    nucleus = np.array([90.0, 60.0, 140.0])  # haematoxylin purple
    tissue = []
    for _ in range(N_VARIANTS):
        # smooth low-frequency intensity variation (bilinear upsampling of a coarse grid)
        coarse = rng.normal(0.0, 1.0, (9, 9))
        idx = np.linspace(0, 8, TILE)
        i0 = np.minimum(idx.astype(int), 7)
        f = idx - i0
        rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
        smooth = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
        img = stroma[None, None, :] * (1.0 + 0.06 * smooth[..., None])
        # nuclei: dark ellipse-ish blobs
        mask = np.zeros((TILE, TILE), bool)
        for cy, cx, r in zip(rng.integers(0, TILE, 180), rng.integers(0, TILE, 180), rng.uniform(4, 9, 180)):
            y0, y1 = max(0, cy - 10), min(TILE, cy + 11)
            x0, x1 = max(0, cx - 10), min(TILE, cx + 11)
            d = ((yy[y0:y1, x0:x1] - cy) / r) ** 2 + ((xx[y0:y1, x0:x1] - cx) / (0.7 * r)) ** 2
            mask[y0:y1, x0:x1] |= d < 1.0
        img[mask] = nucleus
        img += rng.normal(0.0, 4.0, img.shape)
        tissue.append(np.clip(img, 0, 255).astype(np.uint8))
    return background, tissue


def in_tissue(fy, fx):
    return any(((fy - cy) / ry) ** 2 + ((fx - cx) / rx) ** 2 < 1.0 for cy, cx, ry, rx in SECTIONS)


def tile_iterator(shape, background, tissue):
    """Yield the tiles of one level, row by row, as tifffile expects them."""
    h, w = shape
    for ty in range(-(-h // TILE)):
        for tx in range(-(-w // TILE)):
            fy = (ty * TILE + TILE / 2) / h
            fx = (tx * TILE + TILE / 2) / w
            if not in_tissue(fy, fx):
                yield background
                continue
            k = (ty * 7919 + tx * 104729) % (N_VARIANTS * 8)
            tile = tissue[k % N_VARIANTS]
            turn = k // N_VARIANTS
            tile = np.rot90(tile, turn % 4)
            if turn >= 4:
                tile = tile[::-1]
            yield np.ascontiguousarray(tile)


def generate(path, size):
    import tifffile

    shapes = level_shapes(size)
    raw = sum(h * w * 3 for h, w in shapes)
    free = shutil.disk_usage(path.parent).free
    need = int(0.35 * raw) + 2**30  # JPEG of this pattern is ~5-10 % of raw; generous margin
    if free < need:
        print(
            f"not enough disk space in {path.parent}: {free / 1e9:.1f} GB free, the test file needs "
            f"up to ~{need / 1e9:.1f} GB. Pass --workdir DIR on a disk with more space, or a "
            "smaller --size.",
        )
        return False
    background, tissue = make_tiles()
    print(
        f"generating {path} ({size:,} x {size:,} px RGB, {len(shapes)} levels "
        f"{' '.join(f'{w}' for _, w in shapes)} px, {TILE}px JPEG tiles) ...",
        flush=True,
    )
    options = dict(
        photometric="rgb",
        tile=(TILE, TILE),
        compression="jpeg",
        compressionargs={"level": JPEG_QUALITY},
        dtype=np.uint8,
        resolutionunit="CENTIMETER",
    )
    partial = path.with_name(path.name + ".partial")
    t0 = time.perf_counter()
    with tifffile.TiffWriter(partial, bigtiff=True, ome=True) as tw:
        for level, shape in enumerate(shapes):
            spacing = PIXEL_SIZE_UM * size / shape[1]
            kwargs = dict(shape=(*shape, 3), resolution=(1e4 / spacing, 1e4 / spacing), **options)
            if level == 0:
                kwargs.update(
                    subifds=len(shapes) - 1,
                    metadata={
                        "axes": "YXS",
                        "SignificantBits": 8,
                        "PhysicalSizeX": PIXEL_SIZE_UM,
                        "PhysicalSizeXUnit": "µm",
                        "PhysicalSizeY": PIXEL_SIZE_UM,
                        "PhysicalSizeYUnit": "µm",
                    },
                )
            else:
                kwargs.update(subfiletype=1, metadata=None)
            tw.write(tile_iterator(shape, background, tissue), **kwargs)
    os.replace(partial, path)
    dt = time.perf_counter() - t0
    print(f"generated in {dt:.1f} s; file size {path.stat().st_size / 1e6:,.1f} MB")
    return True


def existing_ok(path, size):
    """True when `path` is a complete test file of the requested size."""
    if not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            s = tif.series[0]
            return tif.is_ome and s.shape[:2] == (size, size) and len(s.levels) == len(level_shapes(size))
    except Exception:
        return False


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def info_command():
    script = Path(sys.executable).with_name("boneimg")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "info"]
    return [sys.executable, "-m", "boneimg", "info"]


def run_child(cmd):
    """Run `cmd`; return (wall s, peak RSS in bytes, exit code, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        # os.wait4 returns this very child's rusage (not the RUSAGE_CHILDREN aggregate).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    # ru_maxrss is in KiB on Linux and in bytes on macOS
    rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
    return wall, rss, proc.returncode, stdout, stderr


def verdict(ok):
    return "PASS" if ok else "FAIL"


def evict_from_page_cache(path):
    """Drop `path` (only this file) from the OS page cache, so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bench_cli(path, runs, cold=False):
    cmd = [*info_command(), str(path)]
    print(f"\n== boneimg info, {runs} fresh processes: {' '.join(cmd)}")
    print("   (peak RSS = the child's ru_maxrss from os.wait4; wall = launch to exit)")
    if cold:
        print("   (--cold: the test file is evicted from the page cache before each run)")
    walls, rsss = [], []
    for i in range(runs):
        if cold:
            evict_from_page_cache(path)
        wall, rss, code, stdout, stderr = run_child(cmd)
        if code != 0:
            print(f"run {i + 1}: exit code {code} after {wall:.2f} s")
            print("--- stdout ---\n" + stdout[-3000:] + "\n--- stderr ---\n" + stderr[-3000:])
            print(f"info: FAIL (the command failed; targets < {TARGET_WALL_S:g} s, < {TARGET_RSS_MB:g} MB)")
            return False
        if i == 0:
            print("--- output of the first run ---")
            print(stdout.rstrip()[:4000])
            if stderr.strip():
                print("--- stderr ---\n" + stderr.rstrip()[:2000])
            print("---")
        walls.append(wall)
        rsss.append(rss / 1e6)
        print(f"run {i + 1}: info: wall {wall:.2f} s, peak RSS {rss / 1e6:.0f} MB")
    med_wall, med_rss = statistics.median(walls), statistics.median(rsss)
    print(
        f"best:   info: wall {min(walls):.2f} s, peak RSS {min(rsss):.0f} MB "
        f"(target < {TARGET_WALL_S:g} s, < {TARGET_RSS_MB:g} MB)"
    )
    print(
        f"median: info: wall {med_wall:.2f} s, peak RSS {med_rss:.0f} MB "
        f"(target < {TARGET_WALL_S:g} s, < {TARGET_RSS_MB:g} MB)"
    )
    ok_wall = med_wall < TARGET_WALL_S
    ok_rss = max(rsss) < TARGET_RSS_MB
    print(f"{verdict(ok_wall)}: wall time, median {med_wall:.2f} s < {TARGET_WALL_S:g} s")
    print(f"{verdict(ok_rss)}: peak memory, worst run {max(rsss):.0f} MB < {TARGET_RSS_MB:g} MB")
    return ok_wall and ok_rss


def bench_in_process(path, size):
    print("\n== in this process")
    t0 = time.perf_counter()
    import boneimg as bi

    print(f"import boneimg: {time.perf_counter() - t0:.2f} s")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        img = bi.load(path)
        times.append(time.perf_counter() - t0)
    print(
        f"bi.load: {' '.join(f'{t:.3f}' for t in times)} s (median {statistics.median(times):.3f} s) "
        f"-> {img!r}"
    )
    # one region in tissue (the centre of the first section), one straddling tile borders,
    # one in the blank background; none aligned to the 512 px tile grid
    regions = [
        (int(SECTIONS[0][0] * size) + 100, int(SECTIONS[0][1] * size) + 100),
        (size // 2 + 300, size // 2 - 300),
        (300, 300),
    ]
    for y, x in regions:
        y, x = min(y, size - 1024), min(x, size - 1024)
        t0 = time.perf_counter()
        block = img.data[y : y + 1024, x : x + 1024].compute()
        dt = time.perf_counter() - t0
        print(f"read 1024x1024 region of level 0 at (y={y}, x={x}): {dt:.3f} s, {block.shape} {block.dtype}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=40_000, help="image side in px (default 40000)")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="where the test file lives and is reused (default: <tmp>/boneimg-bench, deleted "
        "afterwards unless --keep)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated file for the next run")
    parser.add_argument("--runs", type=int, default=3, help="fresh `boneimg info` processes (default 3)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="evict the test file from the page cache before each `boneimg info` run (Linux)",
    )
    args = parser.parse_args(argv)
    if args.size < 1024:
        parser.error("--size must be at least 1024 (the benchmark reads 1024 x 1024 regions)")

    workdir = args.workdir or Path(tempfile.gettempdir()) / "boneimg-bench"
    keep = args.keep or args.workdir is not None
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"pyramid_{args.size}.ome.tif"
    print(f"python {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs")
    try:
        if existing_ok(path, args.size):
            print(f"reusing {path} ({path.stat().st_size / 1e6:,.1f} MB)")
        elif not generate(path, args.size):
            return 0
        bench_cli(path, args.runs, cold=args.cold)
        bench_in_process(path, args.size)
    except Exception:
        traceback.print_exc()
        print("FAIL: the benchmark itself failed (see the traceback above)")
    finally:
        if not keep and path.exists():
            path.unlink()
            print(f"\nremoved {path} (pass --keep to reuse it)")
            if args.workdir is None and not any(workdir.iterdir()):
                workdir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
