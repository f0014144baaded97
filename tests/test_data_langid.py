"""Language detection: accurate on short texts among plausible languages, identical to py3langid, batched."""

from __future__ import annotations

from lingoforge.data.langid import MIN_CONFIDENCE, LanguageDetector

SHORT = {
    "en": ["Where is my order?", "Refund please", "The app crashes when I log in"],
    "es": ["¿Dónde está mi pedido?", "Quiero un reembolso", "La aplicación se cierra al entrar"],
    "de": ["Wo ist meine Bestellung?", "Rückerstattung bitte", "Die App stürzt beim Anmelden ab"],
    "fr": ["Où est ma commande ?", "Remboursement svp", "L'application plante à la connexion"],
    "pt": ["Cadê meu pedido?", "O aplicativo fecha quando entro na conta"],
    "zh": ["我的订单在哪里？", "请退款"],
    "ja": ["注文はどこですか？", "返金してください"],
    "ar": ["أين طلبي؟", "أريد استرداد المبلغ"],
    "hi": ["मेरा ऑर्डर कहाँ है?", "पैसे वापस चाहिए"],
    "ru": ["Где мой заказ?", "Приложение вылетает при входе"],
}


def test_short_texts_in_ten_languages() -> None:
    texts = [t for lang in SHORT for t in SHORT[lang]]
    gold = [lang for lang in SHORT for _ in SHORT[lang]]
    got = [d.language for d in LanguageDetector().detect(texts)]
    assert got == gold


def test_matches_py3langid_classify_exactly() -> None:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    detector = LanguageDetector(["gl", "af"])
    reference = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    reference.set_languages(detector.labels)
    texts = [t for lang in SHORT for t in SHORT[lang]] + ["SHOUTING IN CAPITALS ABOUT A REFUND", "Talla equivocada"]
    for text, det in zip(texts, detector.detect(texts), strict=True):
        lang, prob = reference.classify(text)
        assert (det.language, round(det.confidence, 4)) == (lang, round(prob, 4)), text


def test_no_letters_means_undetermined_and_unsure() -> None:
    empty, digits = LanguageDetector().detect(["", "   "])
    assert empty.language is None and not empty.sure and not digits.sure
    (number,) = LanguageDetector().detect(["12345"])
    assert number.confidence < MIN_CONFIDENCE and not number.sure


def test_unknown_candidates_are_reported_not_fatal() -> None:
    detector = LanguageDetector(["xx", "es"])
    assert detector.unsupported == ("xx",) and "es" in detector.labels


def test_large_batch_keeps_order() -> None:
    """~12,000 texts in one call come back one per text, in order (speed: bench/bench_langid.py)."""
    gold = [lang for lang in SHORT for _ in SHORT[lang]] * 500
    texts = [t for lang in SHORT for t in SHORT[lang]] * 500
    assert [d.language for d in LanguageDetector().detect(texts)] == gold
