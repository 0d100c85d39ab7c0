"""The instructions sent to the model; the reply format is what parsing.py reads back."""
import json

PRIORITIES = ("low", "medium", "high", "critical")
TYPES = ("functional", "negative", "boundary", "edge", "security", "performance", "usability", "integration")

SYSTEM_PROMPT = f"""You are a senior QA engineer who writes precise, executable software test cases.
Reply with one JSON object and nothing else, in this shape:
{{"testCases": [{{"title": "...", "description": "...", "preconditions": ["..."], "steps": ["..."],
"expectedResult": "...", "priority": "{'|'.join(PRIORITIES)}", "type": "{'|'.join(TYPES)}"}}]}}"""


# A saved case used as a style example is cut to this many characters, so references can
# never carry a prompt past its caps (at most MAX_REFERENCES of them are sent).
MAX_EXAMPLE_CHARS = 2_000


def _example(case):
    text = json.dumps({key: case.get(key) for key in ("title", "steps", "expectedResult")}, ensure_ascii=False)
    return text[:MAX_EXAMPLE_CHARS]


def build_messages(prompt, count, file_content=None, context=None, references=()):
    parts = [f"Write exactly {count} test cases for this feature.", "", "Feature:", prompt.strip()]
    if context:
        parts += ["", "Context:", context.strip()]
    if file_content:
        parts += ["", "Relevant file content:", "```", file_content, "```"]
    if references:
        parts += ["", "Existing test cases of this project, as examples of style (do not repeat them):"]
        parts += [_example(case) for case in references]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(parts)},
    ]
