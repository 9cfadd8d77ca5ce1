"""A DynamoDB client double for the sink's unit tests and the sink contract (no server)."""

from __future__ import annotations

from decimal import Decimal

from botocore.exceptions import ClientError

from consumers.sinks import dynamodb as ddb


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


class FakeDynamoDb:
    """A table in a dict behind ``put_item`` and ``transact_write_items`` that evaluates our two
    conditions as DynamoDB does: a transaction applies all its puts or none, and names each
    action's reason when cancelled (the answers of DynamoDB Local 3.3, checked by hand).

    ``answers`` forces an error for an item key (attribute ``k``), or for one version of it
    (``"k@3"``), given as the ClientError ``put_item`` raises. In a transaction it becomes that
    action's cancellation reason; an error about the request itself (missing table...) is
    raised by the whole call. ``refuse_transactions_with``: keys whose presence makes DynamoDB
    refuse the whole transaction (e.g. an item over 400 KB), as a ValidationException."""

    def __init__(self, answers=None, *, refuse_transactions_with=(), reasons=True):
        self.items = {}
        self.puts = []  # every PutItem request
        self.transactions = []  # the Puts of every TransactWriteItems call
        self.answers = dict(answers or {})
        self.refuse = set(refuse_transactions_with)
        self.reasons = reasons  # False: a cancellation without CancellationReasons

    @property
    def calls(self):
        return self.puts

    def sent(self):
        """Every (key, version) sent, in any call."""
        puts = self.puts + [p for t in self.transactions for p in t]
        return [(p["Item"]["k"].get("S") or p["Item"]["k"].get("N"), int(p["Item"]["Version"]["N"])) for p in puts]

    @staticmethod
    def _key(put):
        ((kind, value),) = put["Item"][put["ExpressionAttributeNames"]["#pk"]].items()
        return Decimal(value).normalize() if kind == "N" else value

    def _refusal(self, put):
        key, version = self._key(put), int(put["ExpressionAttributeValues"][":version"]["N"])
        forced = self.answers.get(f"{key}@{version}") or self.answers.get(str(key))
        if forced is not None:
            return forced
        stored = self.items.get(key)
        if stored is None:
            return None
        held = stored.get(put["ExpressionAttributeNames"]["#version"])
        if held is not None:
            held = int(held["N"])
            if put["ConditionExpression"] == ddb.UPSERT_CONDITION and held < version:
                return None
            if put["ConditionExpression"] == ddb.DELETE_CONDITION and held <= version:
                return None
        return client_error("ConditionalCheckFailedException")

    def put_item(self, **request):
        self.puts.append(request)
        refusal = self._refusal(request)
        if refusal is not None:
            raise refusal
        self.items[self._key(request)] = request["Item"]
        return {}

    def transact_write_items(self, TransactItems):
        puts = [action["Put"] for action in TransactItems]
        self.transactions.append(puts)
        keys = [self._key(p) for p in puts]
        if len(puts) > 100 or len(set(keys)) < len(keys) or self.refuse & set(map(str, keys)):
            raise client_error("ValidationException")
        reasons = []
        for put in puts:
            refusal = self._refusal(put)
            if refusal is None:
                reasons.append({"Code": "None"})
                continue
            code = refusal.response["Error"]["Code"]
            if code not in REASON_CODES:
                raise refusal
            reasons.append({"Code": REASON_CODES[code], "Message": code})
        if any(r["Code"] != "None" for r in reasons):
            response = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}}
            response["ResponseMetadata"] = {"HTTPStatusCode": 400}
            if self.reasons:
                response["CancellationReasons"] = reasons
            raise ClientError(response, "TransactWriteItems")
        for key, put in zip(keys, puts, strict=True):
            self.items[key] = put["Item"]
        return {}


REASON_CODES = {
    "ConditionalCheckFailedException": "ConditionalCheckFailed",
    "ValidationException": "ValidationError",
    "ThrottlingException": "ThrottlingError",
    "TransactionConflictException": "TransactionConflict",
}
