"""Train the tycho shapes demo model (Moondream 2 architecture, ~6M params).

Runs on one GPU (PyTorch, numpy, Pillow, tokenizers, safetensors). Scenes are
generated on the fly by CPU worker processes (scenes.py, numpy path), cut into
Moondream crops exactly as tycho tiles them (Pillow resampling + JPEG
augmentation stand in for libvips), and every scene trains 8 or 16 (--task-mix) teacher-forced
task sequences (caption, counting, colour, detect, point) over one shared
BOS+image prefix, exactly the forward tycho runs at inference.

  python3 tools/demo_model/train.py --out DIR [--steps N] [--seed S] [--max-seconds T]

Writes DIR/model.safetensors (bf16, HF names model.vision.* / model.text.* /
model.region.*), DIR/config.json, DIR/tokenizer.json, DIR/train_log.txt.
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes as S  # noqa: E402

# ---- architecture -----------------------------------------------------------------------------
VIS = dict(enc_dim=128, enc_patch_size=14, enc_n_layers=5, enc_ff_dim=512, enc_n_heads=4, proj_out_dim=256,
           crop_size=378, in_channels=3, max_crops=12, overlap_margin=4, proj_inner_dim=512)
# max_context only goes to config.json (training uses 730 + 40 positions); 2048 so tycho's default
# max_tokens fit after the image prefix (runs 1-5 exported 1024; the shipped config says 2048)
TXT = dict(dim=256, ff_dim=1024, n_layers=4, vocab_size=512, max_context=2048, n_heads=4, n_kv_heads=4,
           prefix_attn=730, group_size=None)
REG = dict(dim=256, coord_feat_dim=256, coord_out_dim=1024, size_feat_dim=512, size_out_dim=2048, inner_dim=256,
           group_size=None)
LS = 40          # suffix length (prompt + answer / region sequence)
PREFIX = 730
ROT = 32
THETA = 10000.0

SPECIALS = ["<|endoftext|>"] + [f"<|md_reserved_{i}|>" for i in range(9)]
EOS, INSTR, SEP, ANS, COORD, SIZE = 0, 1, 2, 3, 5, 6


# ---- tokenizer --------------------------------------------------------------------------------
def corpus():
    texts = ["describe", "short", "normal", "long", "query", "detect", "point"]
    rng = random.Random(0)
    for _ in range(3000):
        texts.append(S.caption(S.sample_scene(rng)))
    for sh in S.SHAPES:
        texts += [S.count_question_shape(sh), S.color_question(sh), " " + sh, sh]
    for c in S.COLOR_NAMES:
        texts += [S.count_question_color(c), " " + c + " shape", c]
    texts += [str(i) for i in range(10)]
    return texts


def train_tokenizer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return tok


def templates(enc):
    return {
        "caption": {"short": [INSTR] + enc("describe") + [SEP] + enc("short") + [ANS],
                    "normal": [INSTR] + enc("describe") + [SEP] + enc("normal") + [ANS],
                    "long": [INSTR] + enc("describe") + [SEP] + enc("long") + [ANS]},
        "query": {"prefix": [INSTR] + enc("query") + [SEP], "suffix": [ANS]},
        "detect": {"prefix": [INSTR] + enc("detect") + [SEP], "suffix": [ANS]},
        "point": {"prefix": [INSTR] + enc("point") + [SEP], "suffix": [ANS]},
    }


# ---- value quantisation exactly as tycho decodes ----------------------------------------------
def coord_bin(v):
    return min(1023, max(0, int(math.floor(v * 1024 + 0.5))))


def size_bin(s):
    return min(1023, max(0, int(math.floor((math.log2(s) + 10) / 10 * 1023 + 0.5))))


def size_val(b):
    return float(np.float32(2.0) ** np.float32((b / 1023.0) * 10.0 - 10.0))


# ---- one training sample ----------------------------------------------------------------------
class SeqBuilder:
    def __init__(self):
        self.ids, self.kind, self.val, self.ttok, self.tcoord, self.tsize = [], [], [], [], [], []

    def tok(self, i):
        self.ids.append(i); self.kind.append(0); self.val.append((0.0, 0.0))
        self.ttok.append(-100); self.tcoord.append(-100); self.tsize.append((-100, -100))

    def emb(self, kind, a, b=0.0):
        self.ids.append(0); self.kind.append(kind); self.val.append((a, b))
        self.ttok.append(-100); self.tcoord.append(-100); self.tsize.append((-100, -100))


def text_seq(prompt, answer):
    s = SeqBuilder()
    for i in prompt + answer:
        s.tok(i)
    n = len(prompt)
    full = answer + [EOS]
    for k, t in enumerate(full):
        s.ttok[n - 1 + k] = t
    return s


def region_seq(prompt, objs, W, H, with_size):
    s = SeqBuilder()
    for i in prompt:
        s.tok(i)
    last = len(prompt) - 1
    s.ttok[last] = COORD if objs else EOS
    for k, o in enumerate(objs):
        x0, y0, x1, y1 = S.bbox(o)
        bx, by = coord_bin((x0 + x1) / 2 / W), coord_bin((y0 + y1) / 2 / H)
        s.tcoord[last] = bx
        s.emb(1, bx / 1024.0)
        s.tcoord[-1] = by
        s.emb(1, by / 1024.0)
        if with_size:
            bw, bh = size_bin((x1 - x0) / W), size_bin((y1 - y0) / H)
            s.tsize[-1] = (bw, bh)
            s.emb(2, size_val(bw), size_val(bh))
        last = len(s.ids) - 1
        s.ttok[last] = COORD if k + 1 < len(objs) else EOS
    return s


def order(objs):
    return sorted(objs, key=lambda o: (o["x0"] * 2 + o["d"], o["y0"] * 2 + o["d"]))


class Sampler:
    def __init__(self, tokfile, mix=2, resample_small=0.0):
        from tokenizers import Tokenizer
        self.mix = mix
        self.resample_small = resample_small
        self.tok = Tokenizer.from_file(tokfile)
        self.cache = {}
        self.tpl = templates(self.enc)

    def enc(self, text):
        if text not in self.cache:
            self.cache[text] = self.tok.encode(text).ids
        return self.cache[text]

    def tasks(self, rng, scene):
        """8 sequences per scene (run 1): one shape and one colour query per region skill."""
        objs = scene["objects"]
        W, H = scene["width"], scene["height"]
        shapes_present = sorted({o["shape"] for o in objs})
        colors_present = sorted({o["color"] for o in objs})
        qp, qs = self.tpl["query"]["prefix"], self.tpl["query"]["suffix"]

        def pick(present, allv, p=0.7):
            return rng.choice(present) if rng.random() < p else rng.choice(allv)

        def query(q, a):
            return text_seq(qp + self.enc(q) + qs + qs, self.enc(a))

        seqs = []
        length = rng.choice(["short", "normal", "long"])
        seqs.append(text_seq(self.tpl["caption"][length], self.enc(S.caption(scene))))
        sh = pick(shapes_present, S.SHAPES, 0.6)
        seqs.append(query(S.count_question_shape(sh), str(sum(o["shape"] == sh for o in objs))))
        c = pick(colors_present, S.COLOR_NAMES, 0.6)
        seqs.append(query(S.count_question_color(c), str(sum(o["color"] == c for o in objs))))
        singles = [s for s in S.SHAPES if sum(o["shape"] == s for o in objs) == 1]
        if singles:
            sh = rng.choice(singles)
            col = [o["color"] for o in objs if o["shape"] == sh][0]
            seqs.append(query(S.color_question(sh), col))
        else:
            sh = rng.choice(S.SHAPES)
            seqs.append(query(S.count_question_shape(sh), str(sum(o["shape"] == sh for o in objs))))
        for skill in ("detect", "point"):
            pre, suf = self.tpl[skill]["prefix"], self.tpl[skill]["suffix"]
            sh = pick(shapes_present, S.SHAPES, 0.75)
            c = pick(colors_present, S.COLOR_NAMES, 0.75)
            for q in (sh, c + " shape"):
                m = order([o for o in objs if S.matches(o, q)])
                seqs.append(region_seq(pre + self.enc(" " + q) + suf, m, W, H, skill == "detect"))
        return seqs

    def tasks_v2(self, rng, scene):
        """16 sequences per scene (runs 2 and 3)."""
        objs = scene["objects"]
        W, H = scene["width"], scene["height"]
        colors_present = sorted({o["color"] for o in objs})
        qp, qs = self.tpl["query"]["prefix"], self.tpl["query"]["suffix"]

        def query(q, a):
            return text_seq(qp + self.enc(q) + qs + qs, self.enc(a))

        seqs = []
        length = rng.choice(["short", "normal", "long"])
        seqs.append(text_seq(self.tpl["caption"][length], self.enc(S.caption(scene))))
        for sh in rng.sample(S.SHAPES, 2):
            seqs.append(query(S.count_question_shape(sh), str(sum(o["shape"] == sh for o in objs))))
        cols = rng.sample(colors_present, 1) + rng.sample(S.COLOR_NAMES, 1)
        for c in cols:
            seqs.append(query(S.count_question_color(c), str(sum(o["color"] == c for o in objs))))
        singles = [s for s in S.SHAPES if sum(o["shape"] == s for o in objs) == 1]
        if singles:
            sh = rng.choice(singles)
            col = [o["color"] for o in objs if o["shape"] == sh][0]
            seqs.append(query(S.color_question(sh), col))
        else:
            sh = rng.choice(S.SHAPES)
            seqs.append(query(S.count_question_shape(sh), str(sum(o["shape"] == sh for o in objs))))
        for skill in ("detect", "point"):
            pre, suf = self.tpl[skill]["prefix"], self.tpl[skill]["suffix"]
            qs_ = list(S.SHAPES) + [c + " shape" for c in cols]
            for q in qs_:
                m = order([o for o in objs if S.matches(o, q)])
                seqs.append(region_seq(pre + self.enc(" " + q) + suf, m, W, H, skill == "detect"))
        return seqs

    def crops(self, rng, scene):
        from PIL import Image
        img = Image.fromarray(S.render_np(scene))
        if rng.random() < 0.6:
            import io
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=rng.randint(78, 96), subsampling=rng.choice([0, 2, 2]))
            buf.seek(0)
            img = Image.open(buf).convert("RGB")
        W, H = scene["width"], scene["height"]
        th, tw = S.select_tiling(H, W)
        filt = Image.LANCZOS if rng.random() < 0.6 else Image.BICUBIC
        glob = img.resize((378, 378), filt)
        big = img.resize((tw * 266 + 112, th * 266 + 112), filt)
        cs = [np.asarray(glob)]
        for i in range(th):
            for j in range(tw):
                cs.append(np.asarray(big.crop((j * 266, i * 266, j * 266 + 378, i * 266 + 378))))
        return np.stack(cs), (th, tw)

    def batch(self, rng, n):
        crops, tilings, seqs, nobj = [], [], [], []
        for _ in range(n):
            sc = S.sample_scene(rng)
            if self.resample_small > 0 and len(sc["objects"]) <= 2 and rng.random() < self.resample_small:
                sc = S.sample_scene(rng)  # --resample-small: more 3- and 4-object scenes
            c, t = self.crops(rng, sc)
            crops.append(c)
            tilings.append(t)
            ss = self.tasks(rng, sc) if self.mix == 1 else self.tasks_v2(rng, sc)
            seqs += ss
            nobj += [len(sc["objects"])] * len(ss)
        ids = np.zeros((len(seqs), LS), np.int64)
        kind = np.zeros((len(seqs), LS), np.int64)
        val = np.zeros((len(seqs), LS, 2), np.float32)
        ttok = np.full((len(seqs), LS), -100, np.int64)
        tcoord = np.full((len(seqs), LS), -100, np.int64)
        tsize = np.full((len(seqs), LS, 2), -100, np.int64)
        for r, s in enumerate(seqs):
            L = len(s.ids)
            assert L <= LS, L
            ids[r, :L] = s.ids; kind[r, :L] = s.kind; val[r, :L] = s.val
            ttok[r, :L] = s.ttok; tcoord[r, :L] = s.tcoord; tsize[r, :L] = s.tsize
        return dict(crops=torch.from_numpy(np.concatenate(crops)), tilings=torch.tensor(tilings),
                    nobj=torch.tensor(nobj, dtype=torch.int64),
                    ids=torch.from_numpy(ids), kind=torch.from_numpy(kind), val=torch.from_numpy(val),
                    ttok=torch.from_numpy(ttok), tcoord=torch.from_numpy(tcoord), tsize=torch.from_numpy(tsize))


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, tokfile, seed, per_item, mix, resample_small=0.0):
        self.tokfile, self.seed, self.per_item, self.mix = tokfile, seed, per_item, mix
        self.resample_small = resample_small

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        torch.set_num_threads(1)
        smp = Sampler(self.tokfile, self.mix, self.resample_small)
        rng = random.Random(self.seed * 1000003 + wid)
        while True:
            yield smp.batch(rng, self.per_item)


# ---- model ------------------------------------------------------------------------------------
def gelu(x):
    return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, d, h, o=None):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, o or d)

    def forward(self, x):
        return self.fc2(gelu(self.fc1(x)))


class Attn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)


class VBlock(nn.Module):
    def __init__(self, d, ff, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.attn = Attn(d)
        self.mlp = MLP(d, ff)
        self.heads = heads

    def forward(self, x):
        N, L, D = x.shape
        h = self.heads
        qkv = self.attn.qkv(self.ln1(x)).view(N, L, 3, h, D // h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.attn.proj(o.transpose(1, 2).reshape(N, L, D))
        return x + self.mlp(self.ln2(x))


class Vision(nn.Module):
    def __init__(self):
        super().__init__()
        d = VIS["enc_dim"]
        self.patch_emb = nn.Linear(588, d)
        self.pos_emb = nn.Parameter(torch.randn(1, 729, d) * 0.02)
        self.blocks = nn.ModuleList(VBlock(d, VIS["enc_ff_dim"], VIS["enc_n_heads"]) for _ in range(VIS["enc_n_layers"]))
        self.post_ln = nn.LayerNorm(d, eps=1e-5)
        self.proj_mlp = MLP(2 * d, VIS["proj_inner_dim"], VIS["proj_out_dim"])

    def forward(self, crops_u8, tilings):
        # crops_u8 (N, 378, 378, 3) uint8 on the GPU; tilings (B, 2)
        N = crops_u8.shape[0]
        x = (crops_u8.float() / 255.0 - 0.5) / 0.5
        x = x.permute(0, 3, 1, 2).reshape(N, 3, 27, 14, 27, 14).permute(0, 2, 4, 1, 3, 5).reshape(N, 729, 588)
        x = self.patch_emb(x) + self.pos_emb
        for b in self.blocks:
            x = b(x)
        f = self.post_ln(x)  # (N, 729, d)
        d = f.shape[-1]
        tl = tilings.tolist()
        offs, o = [], 0
        for th, tw in tl:
            offs.append(o)
            o += 1 + th * tw
        B = len(tl)
        glob = f[torch.tensor(offs, device=f.device)]
        pooled = torch.empty_like(glob)
        groups = {}
        for b, t in enumerate(tl):
            groups.setdefault(tuple(t), []).append(b)
        for (th, tw), bs in groups.items():
            idx = torch.tensor([offs[b] + 1 + k for b in bs for k in range(th * tw)], device=f.device)
            tiles = f[idx].view(len(bs), th, tw, 27, 27, d)
            rows = []
            for ty in range(th):
                r0, r1 = (0 if ty == 0 else 4), (27 if ty == th - 1 else 23)
                cols = []
                for tx in range(tw):
                    c0, c1 = (0 if tx == 0 else 4), (27 if tx == tw - 1 else 23)
                    cols.append(tiles[:, ty, tx, r0:r1, c0:c1])
                rows.append(torch.cat(cols, dim=2))
            st = torch.cat(rows, dim=1).permute(0, 3, 1, 2).float()
            p = F.adaptive_avg_pool2d(st, 27).permute(0, 2, 3, 1).reshape(len(bs), 729, d)
            pooled[torch.tensor(bs, device=f.device)] = p.to(pooled.dtype)
        return self.proj_mlp(torch.cat([glob, pooled], dim=-1))  # (B, 729, text dim)


def rope_tables(n, device):
    inv = 1.0 / (THETA ** (torch.arange(0, ROT, 2, dtype=torch.float32) / ROT))
    ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cos(ang).to(device), torch.sin(ang).to(device)


def rope(x, cos, sin):
    # x (N, H, L, hd); cos/sin (L, 16); half-split pairs (j, j+16) on the first 32 dims
    h = ROT // 2
    a, b, rest = x[..., :h].float(), x[..., h:ROT].float(), x[..., ROT:]
    return torch.cat([(a * cos - b * sin).to(x.dtype), (a * sin + b * cos).to(x.dtype), rest], dim=-1)


class TBlock(nn.Module):
    def __init__(self, d, ff):
        super().__init__()
        self.ln = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attn(d)
        self.mlp = MLP(d, ff)


class Text(nn.Module):
    def __init__(self):
        super().__init__()
        d, V = TXT["dim"], TXT["vocab_size"]
        self.wte = nn.Parameter(torch.randn(V, d) * 0.02)
        self.blocks = nn.ModuleList(TBlock(d, TXT["ff_dim"]) for _ in range(TXT["n_layers"]))
        self.post_ln = nn.LayerNorm(d, eps=1e-5)
        self.lm_head = nn.Linear(d, V)


class Region(nn.Module):
    def __init__(self):
        super().__init__()
        d, inner = REG["dim"], REG["inner_dim"]
        g = torch.Generator().manual_seed(7)
        cf = (torch.randn(1, REG["coord_feat_dim"] // 2, generator=g) * 6.0).bfloat16().float()
        sf = (torch.randn(2, REG["size_feat_dim"] // 2, generator=g) * 6.0).bfloat16().float()
        self.register_buffer("coord_features", cf)
        self.register_buffer("size_features", sf)
        self.coord_encoder = nn.Linear(REG["coord_feat_dim"], d)
        self.size_encoder = nn.Linear(REG["size_feat_dim"], d)
        self.coord_decoder = MLP(d, inner, REG["coord_out_dim"])
        self.size_decoder = MLP(d, inner, REG["size_out_dim"])


def fourier(v, W):
    f = (2 * math.pi * v.float()) @ W
    return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


class MD(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision = Vision()
        self.text = Text()
        self.region = Region()

    def forward(self, b, cos, sin):
        img = self.vision(b["crops"], b["tilings"])  # (B, 729, D)
        B = img.shape[0]
        BT, L = b["ids"].shape
        T = BT // B
        t = self.text
        D = TXT["dim"]
        H = TXT["n_heads"]
        hd = D // H
        xp = torch.cat([t.wte[0].expand(B, 1, D), img.float()], dim=1)
        with torch.autocast("cuda", enabled=False):
            ec = self.region.coord_encoder(fourier(b["val"][..., :1], self.region.coord_features))
            es = self.region.size_encoder(fourier(b["val"], self.region.size_features))
        et = t.wte[b["ids"]]
        k = b["kind"][..., None]
        xs = torch.where(k == 0, et, torch.where(k == 1, ec, es))
        cp, sp = cos[:PREFIX], sin[:PREFIX]
        cs_, ss_ = cos[PREFIX:PREFIX + L], sin[PREFIX:PREFIX + L]
        mask = torch.ones(L, PREFIX + L, dtype=torch.bool, device=xs.device)
        mask[:, PREFIX:] = torch.tril(torch.ones(L, L, dtype=torch.bool, device=xs.device))
        for blk in t.blocks:
            lp = blk.ln(xp)
            qkv = blk.attn.qkv(lp).view(B, PREFIX, 3, H, hd).permute(2, 0, 3, 1, 4)
            qp, kp, vp = rope(qkv[0], cp, sp), rope(qkv[1], cp, sp), qkv[2]
            ap = F.scaled_dot_product_attention(qp, kp, vp).transpose(1, 2).reshape(B, PREFIX, D)
            ls = blk.ln(xs)
            qkv = blk.attn.qkv(ls).view(BT, L, 3, H, hd).permute(2, 0, 3, 1, 4)
            qs, ks, vs = rope(qkv[0], cs_, ss_), rope(qkv[1], cs_, ss_), qkv[2]
            K = torch.cat([kp.repeat_interleave(T, dim=0), ks], dim=2)
            V = torch.cat([vp.repeat_interleave(T, dim=0), vs], dim=2)
            a_s = F.scaled_dot_product_attention(qs, K, V, attn_mask=mask).transpose(1, 2).reshape(BT, L, D)
            xp = xp + blk.attn.proj(ap) + blk.mlp(lp)
            xs = xs + blk.attn.proj(a_s) + blk.mlp(ls)
        return xs  # raw hidden (BT, L, D)


def soft_ce(logits, target, sigma=1.5):
    n = logits.shape[-1]
    ar = torch.arange(n, device=logits.device, dtype=torch.float32)
    w = torch.exp(-0.5 * ((ar[None, :] - target[:, None].float()) / sigma) ** 2)
    w = w / w.sum(-1, keepdim=True)
    return -(w * F.log_softmax(logits.float(), -1)).sum(-1).mean()


def losses(model, b, hidden, cap_id=None, cap_weight=1.0):
    t, r = model.text, model.region
    out = {}
    m = b["ttok"] >= 0
    h = hidden[m]
    logits = t.lm_head(t.post_ln(h))
    tgt = b["ttok"][m]
    ce = F.cross_entropy(logits.float(), tgt, reduction="none")
    right = logits.argmax(-1) == tgt
    out["tok_acc"] = right.float().mean()
    if cap_id is None:
        out["lm"] = ce.mean()
    else:
        # caption sequences (prompt token 1 is "describe"): weight their tokens by cap_weight
        # (normalised by the plain token count, so the other tasks keep their weight), and
        # report the share of captions whose every token is the argmax given the right
        # prefix: exactly the share that greedy decoding gets right (on fresh scenes).
        is_cap = (b["ids"][:, 1] == cap_id)[:, None].expand_as(m)[m]
        out["lm"] = (ce * torch.where(is_cap, cap_weight, 1.0)).sum() / ce.numel()
        rows = torch.nonzero(m)[:, 0]
        bad = torch.zeros(m.shape[0], device=m.device).index_add_(0, rows, (~right).float())
        capr = b["ids"][:, 1] == cap_id
        out["cap_exact"] = (bad[capr] == 0).float().mean()
        for k in range(1, 5):  # the same per number of objects in the scene
            sel = capr & (b["nobj"] == k)
            out[f"cap{k}"] = ((bad == 0) & sel).float().sum() / sel.float().sum().clamp(min=1)
    m = b["tcoord"] >= 0
    cl = r.coord_decoder(hidden[m])
    out["coord"] = soft_ce(cl, b["tcoord"][m])
    out["coord_err"] = (cl.argmax(-1) - b["tcoord"][m]).abs().float().mean()
    m = b["tsize"][..., 0] >= 0
    sl = r.size_decoder(hidden[m]).view(-1, 2, 1024)
    ts = b["tsize"][m]
    out["size"] = soft_ce(sl.reshape(-1, 1024), ts.reshape(-1))
    out["size_err"] = (sl.argmax(-1) - ts).abs().float().mean()
    out["loss"] = out["lm"] + out["coord"] + out["size"]
    return out


# ---- export -----------------------------------------------------------------------------------
def export(model, out_dir, tok, tpl):
    from safetensors.torch import save_file
    sd = {"model." + k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = {"model_type": "moondream1",
           "config": {"text": TXT, "vision": VIS, "region": REG,
                      "tokenizer": {"bos_id": 0, "eos_id": 0, "answer_id": 3, "thinking_id": 4, "coord_id": 5,
                                    "size_id": 6, "start_ground_points_id": 7, "end_ground_id": 9,
                                    "templates": tpl}}}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    # f32 weights to resume from (split: each file returned by the device tool must stay under 16 MB)
    full = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file({k: v for k, v in full.items() if k.startswith("text.")}, os.path.join(out_dir, "ckpt_text.safetensors"))
    save_file({k: v for k, v in full.items() if not k.startswith("text.")},
              os.path.join(out_dir, "ckpt_rest.safetensors"))


def load_init(model, d, bf16=False):
    from safetensors.torch import load_file
    sd = {}
    if not bf16 and os.path.exists(os.path.join(d, "ckpt_text.safetensors")):
        for f in ("ckpt_text.safetensors", "ckpt_rest.safetensors"):
            sd.update(load_file(os.path.join(d, f)))
    else:  # the bf16 release file
        sd = {k[len("model."):]: v.float() for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    model.load_state_dict(sd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64, help="scenes per step")
    ap.add_argument("--per-item", type=int, default=16, help="scenes per worker item")
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=1e9)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--init", default=None,
                    help="resume weights from DIR/ckpt_*.safetensors (f32), else DIR/model.safetensors (bf16)")
    ap.add_argument("--init-bf16", action="store_true",
                    help="resume from DIR/model.safetensors (bf16) even when f32 checkpoints exist")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--task-mix", type=int, default=2, choices=[1, 2],
                    help="1: 8 task sequences per scene (run 1), 2: 16 (runs 2-5)")
    ap.add_argument("--caption-weight", type=float, default=1.0,
                    help="weight of caption tokens in the LM loss (1: plain mean over all answer tokens, runs 1-3)")
    ap.add_argument("--resample-small", type=float, default=0.0,
                    help="probability of redrawing a scene with 1 or 2 objects (0: the plain scene mix, runs 1-4)")
    args = ap.parse_args()
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    log = open(os.path.join(args.out, "train_log.txt"), "w")

    def say(*a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        log.write(s + "\n")
        log.flush()

    tok = train_tokenizer(TXT["vocab_size"])
    say("tokenizer vocab", tok.get_vocab_size())
    assert tok.get_vocab_size() <= TXT["vocab_size"]
    tokfile = os.path.join(args.out, "tokenizer.json")
    tok.save(tokfile)
    tpl = templates(lambda s: tok.encode(s).ids)
    cap_id = tpl["caption"]["normal"][1]  # the "describe" token
    say("templates", json.dumps(tpl))
    say("caption example", S.caption(S.sample_scene(random.Random(5))),
        tok.encode(S.caption(S.sample_scene(random.Random(5)))).ids)

    dev = "cuda"
    model = MD().to(dev)
    if args.init:
        load_init(model, args.init, args.init_bf16)
        say("initialised from", args.init)
    say("params", sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "pos_emb" not in n]
    nodecay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "pos_emb" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), fused=True)
    warm = min(args.warmup, args.steps // 10)

    def lr_at(s):
        if s < warm:
            return args.lr * (s + 1) / warm
        p = (s - warm) / max(1, args.steps - warm)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))

    cos, sin = rope_tables(PREFIX + LS, dev)
    ds = Stream(tokfile, args.seed, args.per_item, args.task_mix, args.resample_small)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers, pin_memory=True,
                                     prefetch_factor=4, persistent_workers=True)
    it = iter(dl)
    n_items = args.batch // args.per_item

    def get_batch():
        items = [next(it) for _ in range(n_items)]
        b = {}
        for k in items[0]:
            b[k] = torch.cat([i[k] for i in items]).to(dev, non_blocking=True)
        b["tilings"] = b["tilings"].cpu()
        return b

    say(f"setup {time.time() - t0:.1f}s")
    t1 = time.time()
    acc = {}
    step = 0
    wait = 0.0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        tw0 = time.time()
        b = get_batch()
        wait += time.time() - tw0
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hidden = model(b, cos, sin)
            out = losses(model, b, hidden, cap_id, args.caption_weight)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for k, v in out.items():
            acc[k] = acc.get(k, 0.0) + v.detach()
        if (step + 1) % args.log_every == 0 or step == 0:
            n = 1 if step == 0 else args.log_every
            msg = " ".join(f"{k} {float(v) / n:.4f}" for k, v in acc.items())
            say(f"step {step + 1} t {time.time() - t1:.0f}s data_wait {wait:.0f}s lr {lr_at(step):.2e} gn {float(gn):.2f} {msg}")
            acc = {}
        if (step + 1) % args.save_every == 0:
            export(model, args.out, tok, tpl)
        if time.time() - t0 > args.max_seconds:
            say(f"time limit at step {step + 1}")
            break
    export(model, args.out, tok, tpl)
    say(f"done: {step + 1} steps, train {time.time() - t1:.0f}s, total {time.time() - t0:.0f}s")
    os._exit(0)


if __name__ == "__main__":
    main()
