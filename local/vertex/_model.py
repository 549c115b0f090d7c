"""The offline, deterministic stand-in for Gemini.

Same request, same answer, on every machine and in every job: the text quotes the start of the prompt,
so a human can match answers to questions, then says one of 4,096 sentences of a fixed vocabulary, picked
by a checksum of the request. Token counts are plausible (about 4 characters per token, 258 per
media part). Malformed requests fail the way Vertex fails them, with a 400 row status.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable

import orjson

from local.vertex._errors import FAULT_MESSAGES, row_status

MEDIA_TOKENS = 258
_VOCABULARY = (
    "the answer depends on context and careful reading of the question suggests a clear and simple "
    "explanation with several useful details worth noting for anyone curious about how this works in "
    "practice today because each part of the idea connects to another one through patterns that "
    "repeat across many examples small and large alike"
)
_WORDS = tuple(_VOCABULARY.split())
_NO_PARTS = ("Unable to submit request because it must include at least one parts field, which describes the "
             "prompt input. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini")


class RowFailure(Exception):
    """A row that gets no response: `status` is the failed line's status string."""

    def __init__(self, http_code: int, message: str):
        super().__init__(message)
        self.http_code = http_code
        self.status = row_status(http_code, message)


def _bad(message: str) -> RowFailure:
    return RowFailure(400, message)


def _get(obj: dict, camel: str, snake: str):
    """Proto JSON accepts both spellings of a field name."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _check_parts(parts, where: str, file_exists: Callable[[str], bool], texts: list[str]) -> int:
    """Validate a parts list, appending its texts to `texts`; return the number of media parts."""
    if parts is None or parts == []:
        raise _bad(_NO_PARTS)
    if not isinstance(parts, list):
        raise _bad(f"Invalid JSON payload received. Invalid value at '{where}' "
                   "(type.googleapis.com/google.cloud.aiplatform.v1.Part): expected a list.")
    media = 0
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise _bad(f"Invalid JSON payload received. Invalid value at '{where}[{j}]': expected a Part object.")
        text = part.get("text")
        if text is not None:  # a text part: the other kinds are not looked at (the common case, kept short)
            if not isinstance(text, str):
                raise _bad(f"Invalid JSON payload received. Invalid value at '{where}[{j}].text': expected a string.")
            if text == "":
                raise _bad("Unable to submit request because it has an empty text parameter. "
                           "Add a value to the parameter and try again.")
            texts.append(text)
            continue
        file_data = _get(part, "fileData", "file_data")
        if file_data is not None:
            uri = _get(file_data, "fileUri", "file_uri") if isinstance(file_data, dict) else None
            if not isinstance(uri, str) or not uri:
                raise _bad("Unable to submit request because it has an empty fileUri parameter.")
            if uri.startswith("gs://") and not file_exists(uri):
                raise _bad(f"Cannot fetch content from {uri}: the object does not exist or the Vertex AI "
                           "service agent has no storage.objects.get permission on it.")
            media += 1
            continue
        inline = _get(part, "inlineData", "inline_data")
        if inline is not None:
            if not isinstance(inline, dict) or not inline.get("data"):
                raise _bad("Unable to submit request because it has an empty inlineData parameter.")
            media += 1
        elif not any(k in part for k in ("functionCall", "functionResponse", "function_call",
                                         "function_response", "executableCode", "codeExecutionResult")):
            raise _bad("Unable to submit request because at least one part has no data. "
                       "Add text, fileData or inlineData to every part.")
    return media


_NUMBER = (int, float)


def _max_tokens(config) -> int | None:
    """`maxOutputTokens` of a generationConfig (None when the config or the field is absent)."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise _bad("Invalid JSON payload received. Invalid value at 'generation_config': expected an object.")
    value = _get(config, "maxOutputTokens", "max_output_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or value < 1 or value != int(value):
        raise _bad(f"Unable to submit request because maxOutputTokens ({value}) is not a positive integer.")
    return int(value)


def _answers() -> tuple[tuple[str, str], ...]:
    """The sentences an answer can be: (as it is, as the text's second half spells it), 12 to 40 words each.

    Drawn once from a hash of their number, so every machine and process has the same table."""
    table = []
    for number in range(_ANSWERS):
        seed = hashlib.sha256(b"answer %d" % number).digest()
        picks = hashlib.shake_128(seed).digest(12 + seed[0] % 29)
        sentence = " ".join(_WORDS[b % len(_WORDS)] for b in picks)
        table.append((sentence, f"{sentence[0].upper()}{sentence[1:]}."))
    return tuple(table)


# A request's answer is one of _ANSWERS sentences and one of as many average log-probabilities, picked by a CRC of
# the request (its keys sorted, so the same request spelled in another key order gets the same answer). Drawing the
# words from a hash for every row (two hashes, a join of up to 40 words and a rounding) took ~6 us of the ~15 a row
# spent in `predict`; a table lookup takes none of it, and a job still reads as many different answers as a person
# would look at.
_ANSWERS = 4096
_TABLE = _answers()
_LOGPROBS = tuple(-round(0.05 + (k + 0.5) / _ANSWERS * 0.9, 12) for k in range(_ANSWERS))
_sorted_keys = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_crc = zlib.crc32


def _texts(parts, where: str, file_exists: Callable[[str], bool], texts: list[str]) -> int:
    """`_check_parts` for a list of one text part and nothing else (nearly every request's contents), in a few
    steps; anything else takes `_check_parts` itself, which decides and words every failure."""
    if type(parts) is list and len(parts) == 1:
        part = parts[0]
        if type(part) is dict and len(part) == 1:
            text = part.get("text")
            if type(text) is str and text:
                texts.append(text)
                return 0
    return _check_parts(parts, where, file_exists, texts)


def predict(request, model_id: str, file_exists: Callable[[str], bool]) -> dict:
    """Answer one GenerateContentRequest with a GenerateContentResponse dict, or raise RowFailure.

    The checks run in a fixed order (contents, each content's role then parts, the system instruction,
    then the generation config), so a request with several faults always fails with the same message.
    """
    if not isinstance(request, dict):
        raise _bad("Invalid JSON payload received. 'request' must be a GenerateContentRequest object.")
    contents = request.get("contents")
    if contents is None or contents == []:
        raise _bad(_NO_PARTS)
    if not isinstance(contents, list):
        raise _bad("Invalid JSON payload received. Invalid value at 'contents' "
                   "(type.googleapis.com/google.cloud.aiplatform.v1.Content): expected a list.")
    texts: list[str] = []
    media = 0
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise _bad(f"Invalid JSON payload received. Invalid value at 'contents[{i}]': expected an object.")
        role = content.get("role")
        if role is not None and role != "user" and role != "model":
            raise _bad("Please use a valid role: user, model.")
        media += _texts(content.get("parts"), f"contents[{i}].parts", file_exists, texts)
    system = request.get("systemInstruction")  # _get, inlined (as below): a few calls a row add up
    if system is None:
        system = request.get("system_instruction")
    if isinstance(system, dict) and system.get("parts"):
        first: list[str] = []
        media += _texts(system["parts"], "system_instruction.parts", file_exists, first)
        texts = first + texts
    config = request.get("generationConfig")
    if config is None:
        config = request.get("generation_config")
    max_tokens = _max_tokens(config)

    picked = _crc(_dumps(request, option=_sorted_keys))
    sentence, spelled = _TABLE[picked & (_ANSWERS - 1)]
    prompt_chars = sum(map(len, texts)) + len(texts) - 1 if texts else 0  # the texts joined by spaces
    # The first 8 words: splitting at most 8 times leaves them whole, whatever follows.
    topic = " ".join((texts[-1] if texts else "the attached file").split(None, 8)[:8])
    if config is not None and _get(config, "responseMimeType", "response_mime_type") == "application/json":
        text = _dumps({"topic": topic, "answer": sentence}).decode()
    else:
        text = f'On "{topic}": {spelled}'
    prompt_tokens = max(1, (prompt_chars + 3) // 4) + MEDIA_TOKENS * media  # ceil(chars / 4), in integers
    out_tokens = max(1, (len(text) + 3) // 4)
    finish = "STOP"
    if max_tokens is not None and out_tokens > max_tokens:
        text, out_tokens, finish = text[: max_tokens * 4], max_tokens, "MAX_TOKENS"
    return {
        "candidates": [{
            "avgLogprobs": _LOGPROBS[picked >> 12 & (_ANSWERS - 1)],
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": finish,
        }],
        "modelVersion": f"{model_id}@default",
        "usageMetadata": {
            "candidatesTokenCount": out_tokens,
            "promptTokenCount": prompt_tokens,
            "totalTokenCount": prompt_tokens + out_tokens,
        },
    }


def retryable_draw(job_name: str, row: int, fraction: float, codes: tuple) -> RowFailure | None:
    """Decide whether row `row` of job `job_name` fails with a retryable status.

    The draw hashes (job name, row), so it is reproducible for a job, yet a retry of the same row in
    a NEW job (new name) draws afresh: with a fraction below 1 a retried row eventually succeeds.
    """
    if fraction <= 0:
        return None
    h = hashlib.blake2b(f"{job_name}\n{row}".encode(), digest_size=16).digest()
    if int.from_bytes(h[:8], "big") / 2**64 >= fraction:
        return None
    code = codes[int.from_bytes(h[8:], "big") % len(codes)]
    return RowFailure(code, FAULT_MESSAGES[code])
