"""Detectors that need a model (language identification)."""
def test_language_mismatch_needs_confident_detections():
    from sftloop.curate.language import detect_languages
    from sftloop.curate.mine.detect import detect

    q = ["Wie setze ich mein Passwort zurück? Ich habe es vergessen.", "How do I reset my password?", "Password reset link broken"]
    a = ["You can reset your password from the login page by clicking the link.", "Click 'forgot password' on the login page.",
         "Sure, here is how that works."]
    langs = detect_languages(q + a, accurate=True, min_confidence=0.2)
    assert langs[0] == "de" and langs[3] == "en"
    assert "und" in (langs[2], langs[5]) or langs[2] == langs[5]  # a one-liner is not confidently another language
    assert "behaviour:language_mismatch" in detect(q[0], a[0], prompt_lang=langs[0], response_lang=langs[3])
    assert "behaviour:language_mismatch" not in detect(q[2], a[2], prompt_lang=langs[2], response_lang=langs[5])
