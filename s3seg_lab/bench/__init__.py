"""The benchmark: s3seg (plan + apply) against s5cmd and the original tool's algorithm, on a real local S3 server.

    python -m s3seg_lab.bench --store seaweedfs --objects 20000 --runs 3          # or: python scripts/bench.py ...
    python -m s3seg_lab.bench --store seaweedfs --objects 200000 --runs 1 --contenders s3seg,s5cmd
    python -m s3seg_lab.bench --rss-only --rss-sizes 20000,200000      # parent memory vs manifest size only

What one invocation does:

1. Starts the store on 127.0.0.1 (``s3seg_lab.local_s3``: SeaweedFS, rclone or moto).
2. For every run of every contender, round-robin (the order rotates each round), in a **fresh bucket**: seeds
   N objects of 1 KiB named like the original's CDR example (dates over 30 days x 24 hours; 1% names that do not
   match the pattern and 1% with an impossible date, both for the error folder) with ``s5cmd cp``; then times
   the contender as a subprocess; then verifies the bucket (exact destination key set, 1 KiB each, source
   prefix empty, error folder holding exactly the non-matching names). A run that fails verification aborts
   the benchmark: a fast wrong answer cannot win.
   Contenders: ``s3seg`` (``s3seg plan`` then ``s3seg apply``, defaults), ``s3seg-tuned`` (apply with
   ``--tuned`` flags, if given), ``s5cmd`` (``s5cmd run`` of one ``mv`` per object, same destinations),
   ``original`` (the original algorithm, ``original.py``).
3. Measures per run: wall time; client CPU (user+sys of the contender's whole process tree, from ``wait4``:
   children reaped by the contender are included); memory by sampling ``/proc`` every 0.1 s (peak of the
   summed RSS of all its processes, the parent's VmHWM, the largest child's VmHWM); for s3seg runs, also a
   bare paginated ListObjectsV2 loop on the same bucket just before the plan (same prefix, delimiter and page
   size), to compare listing rates.
4. Counting pass (not timed into the table): one more run per contender through a counting proxy
   (``s3seg_lab.counting_proxy``) to count HTTP requests per moved object, by S3 operation. Its wall time is
   reported next to the direct runs, to show the proxy's overhead.
5. Memory scaling (``--rss-sizes``): synthetic manifests of each size applied against a fake, instant S3
   endpoint (``s3seg_lab.instant_s3``, ``--conditional-writes server``), to show whether the apply parent's
   peak RSS depends on the manifest size.

Prints a Markdown table and writes ``bench-out/RESULTS.md`` and ``bench-out/results.json``.

Modules, in the order a run uses them: ``cli`` (arguments, the result document), ``dataset`` (the names and
bytes seeded), ``contenders`` (the store, the runs and their verification), ``procmon`` (wall, CPU and memory of
a process tree), ``memory_pass`` (apply's memory vs the manifest size), ``report`` (summary, ratios, targets,
Markdown). The other benchmarks: ``latency`` (a latency-bound fake store), ``scale`` (a million objects, kill -9
and resume), ``listing`` (parallel listing), ``lean_tls`` (the lean path's CPU over TLS); ``original`` is the
original tool's algorithm, a contender run as a script of its own.
"""

from __future__ import annotations
