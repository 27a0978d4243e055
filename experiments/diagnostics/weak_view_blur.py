# Diagnostic of session 9 (#14); see experiments/diagnostics/README.md. Uses TRUE labels: not a PATE result.
import sys, torch, torch.nn.functional as F
from pate_lightning.pate.queries import mnist_test_queries, holdout_set
from pate_lightning.pate.student_training import StudentSettings, student_module
torch.set_num_threads(2)
q = mnist_test_queries("data", "papers"); test = holdout_set("data", "papers")
sel = (q.images[8000:9000], q.truth[8000:9000])
m = student_module(StudentSettings(architecture="small_cnn", method="fixmatch")); m.load_state_dict(torch.load(sys.argv[1])); m.eval()
def sub(x, dx, dy):
    theta = torch.tensor([[1, 0, 2 * dx / 28], [0, 1, 2 * dy / 28]], dtype=torch.float).expand(len(x), 2, 3)
    return F.grid_sample(x, F.affine_grid(theta, x.shape, align_corners=False), align_corners=False)
with torch.no_grad():
    for name, (x, y) in {"test": test, "selection": sel}.items():
        print(name, {f"{d}": round((m(sub(x, d, d)).argmax(1) == y).float().mean().item(), 4) for d in (0, 0.1, 0.25, 0.5, 1.0, 1.5)})
