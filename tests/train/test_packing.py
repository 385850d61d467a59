import torch
import torch.nn.functional as F

from sftloop.train.masking import IGNORE, encode
from sftloop.train.packing import PackedCollator, pack

CONVS = [
    [{"role": "user", "content": "What is the return window for shoes?"},
     {"role": "assistant", "content": "You can return shoes within 30 days if they are unworn."}],
    [{"role": "user", "content": "Can I pay with PayPal?"},
     {"role": "assistant", "content": "Yes, PayPal is accepted at checkout for all orders."},
     {"role": "user", "content": "And Apple Pay?"},
     {"role": "assistant", "content": "Apple Pay works on iPhone and Safari."}],
    [{"role": "user", "content": "How do I close my account?"},
     {"role": "assistant", "content": "Go to Settings, then Privacy, then Delete account."}],
]


def per_token_loss(model, batch):
    with torch.no_grad():
        kw = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
        logits = model(**kw).logits
    lab = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), lab.clamp(min=0), reduction="none")
    return loss, lab != IGNORE


def test_packed_loss_equals_each_conversation_alone(smol_model, smol_tokenizer):
    samples = [(e.input_ids, e.labels) for e in (encode(smol_tokenizer, c) for c in CONVS)]
    rows = pack(samples, max_len=sum(len(s[0]) for s in samples))
    assert len(rows) == 1 and len(rows[0].seq_lens) == 3
    assert smol_model.config._attn_implementation in ("sdpa", "eager")
    packed_loss, packed_mask = per_token_loss(smol_model, PackedCollator(smol_tokenizer.pad_token_id)(rows))
    packed = packed_loss[packed_mask]
    alone = []
    # the packed row is ordered longest first; run each conversation alone in that order
    for n in rows[0].seq_lens:
        ids, labels = next(s for s in samples if len(s[0]) == n)
        single = pack([(ids, labels)], max_len=n)
        loss, mask = per_token_loss(smol_model, PackedCollator(smol_tokenizer.pad_token_id)(single))
        alone.append(loss[mask])
    alone = torch.cat(alone)
    assert packed.shape == alone.shape
    assert torch.allclose(packed, alone, atol=1e-4), (packed - alone).abs().max()


def test_position_ids_alone_leak_across_conversations_on_sdpa(smol_model, smol_tokenizer):
    """Why the 4D mask exists: without it the second conversation's losses change."""
    samples = [(e.input_ids, e.labels) for e in (encode(smol_tokenizer, c) for c in CONVS[:2])]
    rows = pack(samples, max_len=10_000)
    with_mask, m = per_token_loss(smol_model, PackedCollator(smol_tokenizer.pad_token_id)(rows))
    leaky, _ = per_token_loss(smol_model, PackedCollator(smol_tokenizer.pad_token_id, mask="position_ids")(rows))
    assert (with_mask[m] - leaky[m]).abs().max() > 0.1


def test_pack_first_fit_and_boundaries():
    s = [([1] * 5, [1] * 5), ([2] * 4, [2] * 4), ([3] * 3, [3] * 3), ([4] * 2, [4] * 2)]
    rows = pack(s, max_len=7)
    assert [r.seq_lens for r in rows] == [[5, 2], [4, 3]]
    assert rows[0].position_ids == [0, 1, 2, 3, 4, 0, 1]
    assert rows[0].labels[0] == IGNORE and rows[0].labels[5] == IGNORE
