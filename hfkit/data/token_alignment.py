"""Token-aligned teachers: a teacher whose tokenizer cuts text into the same pieces as the student's, with other ids.

MPNet's and MiniLM's (BERT's) tokenizers split English text into the same WordPiece pieces; only the special
tokens (``<s> </s> <pad> <mask>`` vs ``[CLS] [SEP] [PAD] [MASK]``) and the ids differ. Position i of one is then
position i of the other, so hidden-state and attention transfer work between them: the teacher reads the
student's batch translated piece by piece into its own ids (`token_id_map`). That the two really cut the
training text alike is checked on the data, row by row (`check_same_pieces`), never assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import UserInputError

__all__ = ["SPECIAL_TOKEN_ROLES", "check_same_pieces", "pieces", "texts_of_rows", "token_id_map"]

# Special tokens are matched by role (the student's [CLS] is the teacher's <s>), every other piece by its text.
SPECIAL_TOKEN_ROLES = (
    "cls_token",
    "sep_token",
    "pad_token",
    "mask_token",
    "unk_token",
    "bos_token",
    "eos_token",
)


def _role_ids(tokenizer) -> dict[str, int]:
    """Role -> id of the tokenizer's special tokens (only the roles it has)."""
    roles = {}
    for role in SPECIAL_TOKEN_ROLES:
        token_id = getattr(tokenizer, f"{role}_id", None)
        if token_id is not None:
            roles[role] = int(token_id)
    return roles


def token_id_map(student_tokenizer, teacher_tokenizer) -> torch.Tensor:
    """(student vocabulary size,) tensor: the teacher's id of each student piece, -1 where the teacher has none.

    Special tokens map by role ([CLS] -> the teacher's cls token, [PAD] -> its pad token, ...); every other
    piece maps to the teacher piece with the same text. Index it with a batch of student ids to feed the teacher.
    """
    student_vocab, teacher_vocab = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    mapping = torch.full((max(student_vocab.values()) + 1,), -1, dtype=torch.long)
    for piece, student_id in student_vocab.items():
        if piece in teacher_vocab:
            mapping[student_id] = teacher_vocab[piece]
    teacher_roles = _role_ids(teacher_tokenizer)
    for role, student_id in _role_ids(student_tokenizer).items():
        if role in teacher_roles:
            mapping[student_id] = teacher_roles[role]
    return mapping


def pieces(tokenizer, text: str | tuple[str, str], max_length: int | None) -> list[str]:
    """The pieces the tokenizer cuts `text` (or a text pair) into, special tokens named by role."""
    pair = (text,) if isinstance(text, str) else tuple(text)
    ids = tokenizer(*pair, truncation=max_length is not None, max_length=max_length)["input_ids"]
    names: dict[int, str] = {}
    for role, token_id in _role_ids(tokenizer).items():  # MPNet's <s> is cls and bos: the first role names it
        names.setdefault(token_id, f"<{role.removesuffix('_token')}>")
    return [names.get(i) or tokenizer.convert_ids_to_tokens(i) for i in ids]


def check_same_pieces(
    student_tokenizer,
    teacher_tokenizer,
    texts: Sequence[str | tuple[str, str]],
    max_length: int | None = None,
    what: str = "training text",
) -> None:
    """Refuse (one error naming the first differing row) unless both tokenizers cut every text into the same
    pieces; also refuse a student piece the teacher's vocabulary lacks."""
    mapping = token_id_map(student_tokenizer, teacher_tokenizer)
    batch = 1024
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        split = [(t,) if isinstance(t, str) else tuple(t) for t in chunk]
        columns = list(zip(*split, strict=True))
        encode = dict(truncation=max_length is not None, max_length=max_length)
        student_ids = student_tokenizer(*[list(c) for c in columns], **encode)["input_ids"]
        teacher_ids = teacher_tokenizer(*[list(c) for c in columns], **encode)["input_ids"]
        for offset, (s_ids, t_ids) in enumerate(zip(student_ids, teacher_ids, strict=True)):
            translated = mapping[torch.tensor(s_ids)].tolist() if s_ids else []
            if translated != list(t_ids):
                row = start + offset
                s_pieces = pieces(student_tokenizer, chunk[offset], max_length)
                t_pieces = pieces(teacher_tokenizer, chunk[offset], max_length)
                at = next(
                    (i for i, (a, b) in enumerate(zip(s_pieces, t_pieces)) if a != b),
                    min(len(s_pieces), len(t_pieces)),
                )
                raise UserInputError(
                    f"the teacher's tokenizer cuts the {what} into other pieces than the student's, so their "
                    f"positions do not line up for hidden-state or attention transfer: row {row} ({chunk[offset]!r}) "
                    f"differs at piece {at}: student {s_pieces[at : at + 3]} vs teacher {t_pieces[at : at + 3]}. "
                    "Use a teacher with the student's tokenizer for layer transfer, or logit-only distillation "
                    "(hidden_loss_weight=0, attention_loss_weight=0) with the teacher's logits cached from its "
                    "own tokens (teacher_logits_cache)."
                )


def texts_of_rows(tokenizer, rows: Sequence[Sequence[int]]) -> list[str | tuple[str, str]]:
    """The text (or text pair) each tokenized row holds, rebuilt from its pieces: segments split at the
    separator token, special and padding tokens dropped. For checking rows whose raw text is gone."""
    special = {tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    separator = tokenizer.sep_token_id
    texts = []
    for ids in rows:
        segments, current = [], []
        for token_id in ids:
            if token_id == separator:
                segments.append(current)
                current = []
            elif token_id not in special:
                current.append(token_id)
        segments = [s for s in [*segments, current] if s]
        decoded = [tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens(s)) for s in segments]
        texts.append(decoded[0] if len(decoded) == 1 else tuple(decoded[:2]) if decoded else "")
    return texts
