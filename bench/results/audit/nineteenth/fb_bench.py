import time, torch, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[4]))
from cxrinspect.model import load
m = load(str(__import__("pathlib").Path(__file__).resolve().parents[4] / "resources/models/kermany-densenet121-clean"))
net = m.network.eval().to(memory_format=torch.channels_last)
for p in net.parameters(): p.requires_grad_(False)
x = torch.rand(8, 1, 224, 224)
def fb():
    xx = x.clone().requires_grad_(True)
    net(xx)[:, 0].sum().backward()
fb()
t = time.perf_counter()
for _ in range(5): fb()
fbr = 40 / (time.perf_counter() - t)
with torch.no_grad():
    net(x); t = time.perf_counter()
    for _ in range(5): net(x)
    fr = 40 / (time.perf_counter() - t)
print(torch.__version__, torch.get_num_threads(), f"forward {fr:.1f}/s forward+backward {fbr:.1f}/s")
