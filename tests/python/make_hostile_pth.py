"""Writes the checkpoint corpus of tests/fuzz/corpus/pth: one small state
dict saved by torch.save (valid.pth), and hostile files built opcode by
opcode in torch.save's zip layout, one per way a file can attack a reader:

  stride0.pth      a 2^30-element view of a one-element storage (stride 0)
  memo_bomb.pth    24 levels of memo lookups, each doubling what they copy
  out_of_storage   a view reaching past the end of its storage
  neg_stride.pth   a negative stride;  neg_offset.pth  a negative offset
  two_args.pth     _rebuild_tensor_v2 with two arguments
  overflow.pth     sizes whose product overflows 64 bits
  deep.pth         20,000 nested tuples (tests write a 5 MB one at run time)

and valid_zip64.pth, valid.pth again with zip64 extra fields in its entries' headers.

usage: make_hostile_pth.py OUT_DIR   (needs torch for valid.pth only)"""
import struct
import sys
import zipfile

out = sys.argv[1]


def text(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def int_(n):
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes(9, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def tup(items):
    return b"(" + b"".join(items) + b"t"


def tensor(size, stride, offset=0, args=None):
    storage = tup([text("storage"), b"ctorch\nFloatStorage\n", text("0"), text("cpu"), int_(1)]) + b"Q"
    if args is None:
        args = [storage, int_(offset), tup([int_(s) for s in size]), tup([int_(s) for s in stride]),
                b"\x89", b"ccollections\nOrderedDict\n)R"]
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + tup(args) + b"R"


def state_dict(value):
    return b"\x80\x02}(" + text("w") + value + b"u."


def write(name, pickle, storage=struct.pack("<6f", 1, 2, 3, 4, 5, 6)):
    with zipfile.ZipFile(f"{out}/{name}", "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/data/0", storage)
        z.writestr("archive/version", "3\n")


write("stride0.pth", state_dict(tensor([2**30], [0])), struct.pack("<f", 1))
bomb = b"\x80\x02" + text("aaaaaaaa") + b"q\x00"
for _ in range(24):
    bomb += b"h\x00h\x00\x86q\x00"
write("memo_bomb.pth", bomb + b"h\x00.")
write("out_of_storage.pth", state_dict(tensor([10], [1])))
write("neg_stride.pth", state_dict(tensor([2], [-1], offset=1)))
write("neg_offset.pth", state_dict(tensor([2], [1], offset=-1)))
storage_only = tup([text("storage"), b"ctorch\nFloatStorage\n", text("0"), text("cpu"), int_(1)]) + b"Q"
write("two_args.pth", state_dict(tensor(None, None, args=[storage_only, int_(0)])))
write("overflow.pth", state_dict(tensor([2**40, 2**40], [1, 1])))
write("deep.pth", b"\x80\x02)" + b"\x85" * 20000 + b".")

try:
    import torch
except ImportError:
    sys.exit(0)
torch.manual_seed(0)
torch.save({"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3), "n": {"x": torch.ones(2, dtype=torch.int64)}},
           f"{out}/valid.pth")

# The same file with zip64 extra fields in the local headers.
with zipfile.ZipFile(f"{out}/valid.pth") as src, zipfile.ZipFile(f"{out}/valid_zip64.pth", "w", zipfile.ZIP_STORED) as dst:
    for info in src.infolist():
        with dst.open(info.filename, "w", force_zip64=True) as f:
            f.write(src.read(info))
