"""Proxy tuning: labels_n first queries of the pool with TRUE labels, rest unlabeled; test on held-out."""
import sys, json, time, torch
from pathlib import Path
from lightning.pytorch.callbacks import Callback
import pate_lightning.pate.student_training as st
from pate_lightning.data.sources import load_split
torch.set_num_threads(1)
labels_n = int(sys.argv[1]); cfg = json.loads(sys.argv[2]); every = int(sys.argv[3]) if len(sys.argv) > 3 else 5
split = 9000
images, truth = load_split("mnist", "/work/main/data", train=False)
images = images.unsqueeze(1).float().div_(255)
pool, test = images[:split], (images[split:], truth[split:])
c0 = time.process_time(); w0 = time.perf_counter()
class Curve(Callback):
    def on_train_epoch_end(self, trainer, module):
        if (trainer.current_epoch + 1) % every: return
        module.eval()
        with torch.no_grad(): acc = float((module(test[0]).argmax(1) == test[1]).float().mean())
        module.train()
        ema = [c for c in trainer.callbacks if hasattr(c, "_average_model")]
        if ema and ema[0]._average_model is not None:
            avg = ema[0]._average_model.module; avg.eval()
            with torch.no_grad(): acc = (acc, float((avg(test[0]).argmax(1) == test[1]).float().mean()))
        m = trainer.callback_metrics
        print(f"  epoch {trainer.current_epoch+1} step {trainer.global_step} acc {acc} mask {float(m.get('train/mask_rate', -1)):.3f} cpu {time.process_time()-c0:.0f}s wall {time.perf_counter()-w0:.0f}s", flush=True)
orig = st.Trainer
st.Trainer = lambda **kw: orig(**{**kw, "callbacks": kw["callbacks"] + [Curve()]})
s = st.StudentSettings(**{"val_fraction": 0.0, **cfg}).check()
r = st.train_student(pool[:labels_n], truth[:labels_n], test, s, "cpu", 0, Path("/tmp/proxyroot"), unlabeled=pool)
print("RESULT", json.dumps({"labels": labels_n, "cfg": cfg, "steps": r["steps"], "test_accuracy": r["test_accuracy"],
    "cpu_s": round(time.process_time()-c0), "wall_s": r["seconds"], "per_class": r["test_accuracy_per_class"]}), flush=True)
