"""Per-query cost of the edit-robust head vs efficientnet_lite0 (interleaved, 1 thread) and of the low-detail view's extra
inner product; run from the project root: OMP_NUM_THREADS=1 python benchmarks/copy_head_cost.py"""
import time, numpy as np, torch
torch.set_num_threads(1)
from lookalike import get_embedder
from lookalike.data.photosets import eval_photos
from lookalike.data.edits import apply_edit
base = get_embedder("efficientnet_lite0"); head = get_embedder("checkpoint:models/ntxent-copies-lite0.pt")
qs = [apply_edit(im, "crop", "mild", seed=i) for i, (_, im) in enumerate(eval_photos())] * 2
G = np.random.rand(1515, 1024).astype(np.float32)
base.embed_images(qs[:1]); head.embed_images(qs[:1])
tb, th, tg = [], [], []
for q in qs:
    t = time.perf_counter(); base.embed_images([q]); tb.append(time.perf_counter() - t)
    t = time.perf_counter(); v = head.embed_images([q])[0]; th.append(time.perf_counter() - t)
    t = time.perf_counter(); G @ v; tg.append(time.perf_counter() - t)
print(f"{len(qs)} queries: lite0 embed median {np.median(tb)*1000:.1f} ms, head embed median {np.median(th)*1000:.1f} ms, "
      f"ratio {np.median(th)/np.median(tb):.2f}; extra low-detail product over 1515 x 1024 median {np.median(tg)*1000:.2f} ms")
