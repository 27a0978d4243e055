# Why does the student train on blurrier images than the test's? A diagnostic; see experiments/diagnostics/README.md. Uses TRUE labels: not a PATE result.
"""Diagnostic pilot: FixMatch (fix120_oracle_ho settings, true labels) with pool pseudo-label quality tracked."""
import sys, time, json, torch
from dataclasses import replace
from pathlib import Path
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging
from pate_lightning.pate.queries import mnist_test_queries, holdout_set
from pate_lightning.pate.student_training import StudentSettings, student_module, student_trainer
from pate_lightning.pate.student_pretrain import public_pretraining_set, pretrain
from pate_lightning.pate.student_data import StudentDataModule
from pate_lightning.pate.student_augment import StrongAugment
from pate_lightning.data.augment import apply_affine, draw_affine
from pate_lightning.pate.student_augment import WEAK
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
q = mnist_test_queries("data", "papers"); test = holdout_set("data", "papers")
pool, ptruth = q.images[:8000], q.truth[:8000]
g = torch.Generator().manual_seed(int(sys.argv[1]))
asked = torch.randperm(8000, generator=g)[:290]
s = StudentSettings(method="fixmatch", architecture="small_cnn", batch_size=32, mu=7, ema_decay=0.999, cosine=True,
                    val_fraction=0.0, pretrain="font_digits", pretrain_epochs=2, epochs=int(sys.argv[3]) if len(sys.argv) > 3 else 120, lr=3e-3)
seed = int(sys.argv[1]); seed_everything(seed)
model = student_module(s)
pretrain(model, student_trainer(2, "cpu", Path("/tmp/diag/l")), public_pretraining_set("font_digits", "data"), test, "font_digits", seed)

@torch.no_grad()
def probs(net, x):
    net.eval(); out = torch.cat([net(x[i:i+1000]).exp() for i in range(0, len(x), 1000)]); return out

log = []
class Track(Callback):
    def __init__(self, ema): self.ema = ema
    def on_train_epoch_end(self, trainer, m):
        e = trainer.current_epoch
        if e % 10 != 9 and e != 0: return
        was = m.training
        p = probs(m, pool); conf, lab = p.max(1); mask = conf >= 0.95
        t = probs(m, test[0]).argmax(1)
        ema = self.ema._average_model.module
        pe = probs(ema, pool).argmax(1); te = probs(ema, test[0]).argmax(1)
        row = dict(epoch=e, pool_acc=float((lab == ptruth).float().mean()), mask=float(mask.float().mean()),
                   wrong_confident=float(((lab != ptruth) & mask).float().mean()),
                   test_online=float((t == test[1]).float().mean()), pool_ema=float((pe == ptruth).float().mean()),
                   test_ema=float((te == test[1]).float().mean()))
        log.append(row); print(row, flush=True)
        m.train(was); ema.train(was)

data = StudentDataModule(pool[asked], ptruth[asked], *test, batch_size=32, val_fraction=0.0, augment=False, seed=seed,
                         unlabeled=pool, mu=7, strong=StrongAugment())
ema = EMAWeightAveraging(decay=0.999)
t0 = time.time()
tr = student_trainer(s.epochs, "cpu", Path("/tmp/diag/l"), [ema, Track(ema)])
tr.fit(model, datamodule=data)
p = probs(model, test[0])
tta = sum(probs(model, apply_affine(test[0], draw_affine(1000, torch.Generator().manual_seed(k), WEAK))) for k in range(8))
wrong = (p.argmax(1) != test[1]).nonzero().flatten().tolist()
res = dict(seed=seed, test=float((p.argmax(1) == test[1]).float().mean()), tta8=float(((tta + p).argmax(1) == test[1]).float().mean()),
           wrong=wrong, wrong_pred=p.argmax(1)[wrong].tolist(), seconds=time.time() - t0, log=log)
print(json.dumps(res)); json.dump(res, open(f"/tmp/diag/pilot_{seed}.json", "w"))
torch.save(model.state_dict(), f"/tmp/diag/pilot_{seed}.pt")
