# Why does the student train on blurrier images than the test's? A diagnostic; see experiments/diagnostics/README.md. Uses TRUE labels: not a PATE result.
import sys, torch
from pate_lightning.data.augment import apply_affine
from pate_lightning.pate.queries import mnist_test_queries, holdout_set
from pate_lightning.pate.student_training import StudentSettings, student_module
torch.set_num_threads(2)
q = mnist_test_queries("data", "papers"); test = holdout_set("data", "papers")
sel = (q.images[8000:9000], q.truth[8000:9000])
m = student_module(StudentSettings(architecture="small_cnn", method="fixmatch")); m.load_state_dict(torch.load(sys.argv[1], weights_only=True)); m.eval()
def sub(x, dx, dy):  # resampled dx, dy px off (normalized coordinates span 2 over 28 px)
    return apply_affine(x, torch.tensor([[1, 0, 2 * dx / 28], [0, 1, 2 * dy / 28]]).expand(len(x), 2, 3))
with torch.no_grad():
    for name, (x, y) in {"test": test, "selection": sel}.items():
        print(name, {f"{d}": round((m(sub(x, d, d)).argmax(1) == y).float().mean().item(), 4) for d in (0, 0.1, 0.25, 0.5, 1.0, 1.5)})
