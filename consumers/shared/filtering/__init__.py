"""Lambda-style event filtering (FilterCriteria), compiled once, matched on raw change records.

``compile_filter_criteria({"Filters": [{"Pattern": "<json>"}, ...]})`` returns a
``CompiledFilter`` whose ``matches(record)`` takes the change record exactly as parsed from the
stream (DynamoDB JSON images, e.g. ``{"dynamodb": {"NewImage": {"Email": {"S": "x"}}}}``).
Filters are OR-ed, the fields of one pattern AND-ed, the values listed for one field OR-ed.
No criteria (None, ``{}``, no ``Filters``, empty ``Filters``) matches everything.

Grammar (AWS Lambda event filtering = EventBridge content filtering, as implemented by
aws/event-ruler): exact strings / numbers / ``true`` / ``false`` / ``null`` / ``""``;
``prefix``, ``suffix`` (each also as ``{"equals-ignore-case": s}``); ``equals-ignore-case``;
``wildcard`` (``*``; ``\\*`` and ``\\\\`` escape; no consecutive ``*``); ``anything-but`` (a
string, a number, a list of only strings or only numbers, or ``{"prefix"|"suffix"|
"equals-ignore-case"|"wildcard": s or [s, ...]}``); ``numeric`` (``["=", x]``, ``["<", x]``,
``["<=", x]``, ``[">"|">=", x]``, ``[">"|">=", lo, "<"|"<=", hi]``); ``exists``; ``cidr``;
``$or`` (a list of two or more objects, at any level). A pattern whose only top-level key is
``data`` is matched against ``{"data": record}`` (Kinesis-style filters).

Semantics, as in AWS:

* Values match leaf values only. Strings, prefix/suffix/ignore-case/wildcard only match JSON
  strings; numbers and ``numeric`` only JSON numbers, compared as IEEE doubles (5 == 5.0;
  the string ``"5"`` -- e.g. DynamoDB's ``{"N": "5"}`` -- is not a number); ``null`` only JSON
  null, ``""`` only the empty string.
* An absent field, an object where a leaf is expected, and an array with no scalar element
  are all "absent": only ``{"exists": false}`` matches them; ``anything-but`` and ``numeric``
  do not. ``{"exists": true}`` matches any present leaf, ``null`` included.
* ``anything-but`` matches any present leaf value (of any JSON type) that the corresponding
  positive test would not match.
* Arrays: a field whose value is an array matches when any scalar element matches; nested
  arrays are flattened. Fields reached through arrays of objects must match within the same
  element (event-ruler's "array consistency"). ``exists: false`` looks for its field only in
  the elements chosen by the fields whose dotted names sort before it, and in every element
  when none did: that is how event-ruler evaluates it (``_consistent``), names and all.
* ``$or`` expands into alternatives as in event-ruler: fields apply in document order and a
  field defined again in an alternative *replaces* the earlier definition
  (``{"a": ["x"], "$or": [{"a": ["y"]}, {"b": ["z"]}]}`` is ``a=y`` OR ``a=x AND b=z``).
* Bad patterns are rejected at compile time with ``InvalidFilterPattern`` naming the filter
  index, the JSON path inside the pattern and the reason. That includes, as in event-ruler, a
  ``numeric`` bound or ``anything-but`` number that no double stands for as written
  (``1E-325`` underflows, ``9007199254740993`` has too many digits: ``_numbers``).

``changed_attributes`` (beyond Lambda) AND-s one more condition: a MODIFY passes only if one
of the named attributes differs between OldImage and NewImage (raw DynamoDB JSON compared
without decoding, except that numbers compare numerically and SS/NS/BS order-insensitively);
every other event passes, and so does a MODIFY missing an image (so that it reaches the
ChangeRecord validation and the dead-letter path instead of being dropped silently).

Conformance: ``tests/conformance`` asks aws/event-ruler itself (the matcher behind EventBridge;
Lambda filtering uses its grammar) about thousands of random patterns and events, valid or
not, and requires the same answers. Where we differ, on purpose: event-ruler can lose a
``$or`` alternative that repeats another's value, at random (we do not); it treats a dotted
field name like nested objects (``{"a.b": ...}`` ~ ``{"a": {"b": ...}}``, which its README says
not to rely on; we match names as written); and it matches a number that no double holds
exactly (integers beyond 2**53, decimals past 17 digits) by its text alone, while we compare
numbers as doubles (a parsed record has no text). DynamoDB images carry numbers as strings
(``{"N": "..."}``), so change records meet the last case only in their envelope. Which numeric
operands event-ruler refuses depends on Java's ``Double.toString``: we follow it as specified
since JDK 19; older JDKs also refuse a few more (``1e23``, see ``_numbers``).

Performance: each alternative compiles to closures; alternatives are indexed by one
"discriminating" path whose values are exact strings, so a record only evaluates the
alternatives whose discriminator value it carries, plus unindexed ones. Fields reached through
objects only are read with plain ``dict.get`` chains; the exact array-consistent matcher runs
only when an array of objects (or a scalar) sits on the way. Matching never re-reads the
pattern, never serialises the record and never builds a regex.
"""

from consumers.shared.errors import InvalidFilterPattern
from consumers.shared.filtering._compiled import CompiledFilter, compile_filter_criteria

__all__ = ["CompiledFilter", "InvalidFilterPattern", "compile_filter_criteria"]
