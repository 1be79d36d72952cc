"""The speed anchor of ``pianogen bench``: the plainest eager KV-cached decoder of the novel model's size.

Per-level embeddings summed, pre-norm blocks with scaled_dot_product_attention over a sliced KV
cache, one linear head per level, top-k sampling; nothing else. Our token model must decode at
least as fast as this loop at every precision.
"""

import torch
import torch.nn.functional as F
from torch import nn


class PlainDecoder(nn.Module):
    def __init__(self, levels=4, vocab=1024, d=512, layers=6, heads=8, d_ff=2048, max_len=2048):
        super().__init__()
        self.heads, self.max_len = heads, max_len
        self.emb = nn.ModuleList(nn.Embedding(vocab, d) for _ in range(levels))
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(d), qkv=nn.Linear(d, 3 * d), proj=nn.Linear(d, d),
            ln2=nn.LayerNorm(d), fc=nn.Linear(d, d_ff), out=nn.Linear(d_ff, d))) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.out = nn.ModuleList(nn.Linear(d, vocab, bias=False) for _ in range(levels))

    def forward(self, codes, start, cache):  # codes [B, K, N] at positions start.. -> logits [B, K, V] of the last
        B, K, N = codes.shape
        x = sum(e(codes[:, k]) for k, e in enumerate(self.emb)) + self.pos.weight[start:start + N]
        for b, (kc, vc) in zip(self.blocks, cache):
            q, k, v = b.qkv(b.ln1(x)).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            kc[:, :, start:start + N], vc[:, :, start:start + N] = k, v
            y = F.scaled_dot_product_attention(q, kc[:, :, :start + N], vc[:, :, :start + N], is_causal=N > 1)
            x = x + b.proj(y.transpose(1, 2).reshape(B, N, -1))
            x = x + b.out(F.gelu(b.fc(b.ln2(x))))
        x = self.ln_f(x[:, -1])
        return torch.stack([head(x) for head in self.out], dim=1)

    @torch.inference_mode()
    def generate(self, prompt, n_frames, top_k=250, generator=None):  # prompt [B, K, T0] -> [B, K, n_frames]
        B, K, T0 = prompt.shape
        w = self.pos.weight
        cache = [(w.new_zeros(B, self.heads, T0 + n_frames, w.shape[1] // self.heads),) * 2 for _ in self.blocks]
        cache = [(k, k.clone()) for k, _ in cache]
        logits, out = self(prompt, 0, cache), []
        for i in range(n_frames):
            probs, codes = torch.softmax(logits.float(), -1).topk(min(top_k, logits.shape[-1]), dim=-1)
            step = codes.gather(-1, torch.multinomial(probs.view(B * K, -1), 1, generator=generator).view(B, K, 1))
            out.append(step)
            logits = self(step, T0 + i, cache)
        return torch.cat(out, dim=2)
