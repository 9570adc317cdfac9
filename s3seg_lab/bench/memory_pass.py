"""The memory pass: synthetic manifests of each size applied against the instant endpoint
(``s3seg_lab.instant_s3``, ``--conditional-writes server``): does the apply parent's peak RSS depend on the
manifest size?"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from s3seg_lab import cdr, lab_env, module_command
from s3seg_lab.bench.contenders import BenchError, s3seg_binary
from s3seg_lab.bench.dataset import OBJECT_SIZE, object_names
from s3seg_lab.bench.procmon import measure


def rss_scaling(sizes: list[int], work: str, log: Any) -> list[dict[str, Any]]:
    """Apply synthetic manifests of each size against the fake store; the parent's peak RSS per size."""
    from s3seg import __version__
    from s3seg import config as config_mod
    from s3seg.manifest import ManifestWriter, Move

    fake = subprocess.Popen(module_command("s3seg_lab.instant_s3"), stdout=subprocess.PIPE, text=True, env=lab_env())
    try:
        assert fake.stdout is not None
        port = int(fake.stdout.readline().split()[1])
        endpoint = f"http://127.0.0.1:{port}"
        out = []
        for n in sizes:
            run_dir = os.path.join(work, f"rss-{n}")
            os.makedirs(run_dir, exist_ok=True)
            cfg = os.path.join(run_dir, "config.xml")
            # No pattern: the manifest is synthetic, the config only has to load (and name the endpoint).
            cdr.write_config(cfg, bucket="fake-bucket", endpoint=endpoint, state_dir=run_dir, match_pattern=None)
            settings = config_mod.load(cfg)
            manifest = os.path.join(run_dir, "plan.jsonl")
            header = {"tool": "s3seg", "version": __version__, "endpoint": endpoint, "config": settings.to_dict(),
                      "source": settings.source.url, "synthetic": True}  # fmt: skip
            writer = ManifestWriter(manifest, header)
            for i, (name, dst) in enumerate(object_names(n), start=1):
                writer.add(
                    Move(id=i, src_bucket="fake-bucket", src_key=f"incoming/{name}", dst_bucket="fake-bucket",
                         dst_key=dst, size=OBJECT_SIZE, etag=f'"{i:032x}"', last_modified="2022-12-31T00:00:00+00:00")
                )  # fmt: skip
            writer.close()
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": "fake",
                "AWS_SECRET_ACCESS_KEY": "fake",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            m = measure(
                [*s3seg_binary(), "apply", manifest, "--json", "--no-progress", "--conditional-writes", "server"],
                env,
                run_dir,
            )
            if m.rc != 0:
                raise BenchError(f"synthetic apply of {n} failed: {m.stdout[-1000:]} {m.stderr[-1000:]}")
            done = json.loads(m.stdout)
            if done["this_run"] != {"done": n}:
                raise BenchError(f"synthetic apply of {n}: {done['this_run']}")
            row = {
                "entries": n,
                "wall_s": round(m.wall_s, 2),
                "parent_hwm_mib": round(m.parent_hwm_mib, 1),
                "max_child_hwm_mib": round(m.max_child_hwm_mib, 1),
                "peak_total_rss_mib": round(m.peak_total_rss_mib, 1),
                "manifest_mib": round(os.path.getsize(manifest) / 2**20, 1),
            }
            log(f"  synthetic {n}: {row}")
            out.append(row)
            shutil.rmtree(run_dir, ignore_errors=True)
        return out
    finally:
        fake.kill()
        fake.wait()
