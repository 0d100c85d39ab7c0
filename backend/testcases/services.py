"""Test cases owned by users (seed 000). `owner` is the caller's id, or None for an admin."""
import math

from backend.errors import NotFound
from backend.testcases import repository


def _document(fields, owner_id, ai_generated, provider=None, model=None, token_usage=None):
    return {
        "title": fields["title"],
        "description": fields.get("description", ""),
        "preconditions": fields.get("preconditions", []),
        "steps": fields.get("steps", []),
        "expectedResult": fields.get("expectedResult", ""),
        "priority": fields.get("priority", "medium"),
        "type": fields.get("type", "functional"),
        "tokenUsage": token_usage,
        "provider": provider,
        "modelName": model,
        "aiGenerated": ai_generated,
        "createdBy": owner_id,
    }


def create_case(db, owner_id, fields):
    return repository.insert_cases(db, [_document(fields, owner_id, False, token_usage=fields.get("tokenUsage"))])[0]


def save_generated(db, owner_id, test_cases, token_usage):
    """Each saved case carries its call's tokenUsage; callIds tie cases of one call together."""
    documents = [
        _document(case, owner_id, True, token_usage["provider"], token_usage["modelName"], token_usage)
        for case in test_cases
    ]
    return repository.insert_cases(db, documents)


def get_case(db, case_id, owner):
    case = repository.find_case(db, case_id, owner)
    if case is None:
        raise NotFound(f"Test case {case_id} not found")
    return case


def list_cases(db, owner, query):
    page, limit = query["page"], query["limit"]
    cases, total = repository.list_cases(db, owner, query, (page - 1) * limit, limit)
    return {"data": cases, "total": total, "page": page, "limit": limit, "totalPages": math.ceil(total / limit)}


def update_case(db, case_id, owner, changes):
    case = repository.update_case(db, case_id, owner, changes)
    if case is None:
        raise NotFound(f"Test case {case_id} not found")
    return case


def delete_case(db, case_id, owner):
    if not repository.delete_case(db, case_id, owner):
        raise NotFound(f"Test case {case_id} not found")
