import torch


def test_smollm2_chat_template_and_greedy_generation(smol_model, smol_tokenizer):
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    enc = smol_tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    text = smol_tokenizer.decode(enc["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        out = smol_model.generate(**enc, max_new_tokens=16, do_sample=False)
    answer = smol_tokenizer.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer


def test_minilm_paraphrase_is_closer_than_unrelated(minilm):
    a, b, c = minilm.encode([
        "How do I reset my account password?",
        "I forgot my password, how can I change it?",
        "The Eiffel Tower is located in Paris.",
    ], normalize_embeddings=True)
    assert a.shape == (384,)
    assert float(a @ b) > float(a @ c) + 0.3
