# Why does the student train on blurrier images than the test's? A diagnostic; see experiments/diagnostics/README.md. Uses TRUE labels: not a PATE result.
import sys, torch
from pate_lightning.pate.queries import mnist_test_queries, holdout_set
from pate_lightning.pate.student_training import StudentSettings, student_module
from pate_lightning.data.augment import apply_affine, draw_affine, AffineRange
from pate_lightning.pate.student_augment import WEAK, pixel_shift
torch.set_num_threads(2)
q = mnist_test_queries("data", "papers"); test = holdout_set("data", "papers")
sel = (q.images[8000:9000], q.truth[8000:9000])
m = student_module(StudentSettings(architecture="small_cnn", method="fixmatch")); m.load_state_dict(torch.load(sys.argv[1], weights_only=True)); m.eval()
@torch.no_grad()
def P(x): return m(x).exp()
def shift(x, dx, dy):  # whole-pixel shift with zero fill
    return pixel_shift(x, torch.tensor([[dy, dx]]).expand(len(x), 2))
for name, (x, y) in {"test": test, "selection": sel}.items():
    p = P(x); out = {"plain": (p.argmax(1) == y).float().mean().item()}
    for k in (1, 2, 4, 8, 16, 32):
        t = sum(P(apply_affine(x, draw_affine(len(x), torch.Generator().manual_seed(j), WEAK))) for j in range(k))
        out[f"rand{k}"] = (t.argmax(1) == y).float().mean().item()
    for r in (1, 2):
        t = sum(P(shift(x, dx, dy)) for dx in range(-r, r+1) for dy in range(-r, r+1))
        out[f"grid{r}"] = (t.argmax(1) == y).float().mean().item()
    small = AffineRange(degrees=10.0, translate=0.05, scale=(0.9, 1.1))
    t = sum(P(apply_affine(x, draw_affine(len(x), torch.Generator().manual_seed(j), small))) for j in range(16))
    out["affine16"] = (t.argmax(1) == y).float().mean().item()
    print(name, {k: round(v, 4) for k, v in out.items()})
