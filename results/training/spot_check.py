import sys, torch
torch.set_num_threads(1)
from taskcomp.codec import create_codec
from taskcomp.train import export
from taskcomp.io import load_image, image_to_tensor
from taskcomp.codec.sft import bits_from_likelihoods
ck = sys.argv[1]
if ck.endswith("/"):
    ck = str(export(ck, "/tmp/mid.pth"))
m = create_codec("sft-small", checkpoint=ck)
print(m.checkpoint_info["meta"])
for name in ["kodim01", "kodim05", "kodim19"]:
    x = image_to_tensor(load_image(f"/work/shared/data/kodak/{name}.png"))
    x = x[None] if x.dim()==3 else x
    row=[]
    for q in [0.0, 0.5, 1.0]:
        with torch.no_grad():
            out = m(x, torch.full((1,1,*x.shape[-2:]), q), quantize="round")
        bpp = float(bits_from_likelihoods(out["likelihoods"]).sum()/(x.shape[-2]*x.shape[-1]))
        mse = float(((out["x_hat"].clamp(0,1)*255).round()/255 - x).pow(2).mean())
        import math; row.append(f"q={q}: {bpp:.3f} bpp {10*math.log10(1/mse):.2f} dB")
    print(name, " | ".join(row))
