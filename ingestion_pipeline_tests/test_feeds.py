"""Every feed: the legacy flat files of reference/001 (identify, track, group, CRM)
as that document describes them, and CSV for every stream."""

from __future__ import annotations

import gzip
import hashlib
import json

from ingestion_pipeline.defs.jobs import day_run_requests
from ingestion_pipeline.pipeline import build_table, ingest_partition, list_day_files
from ingestion_pipeline.streams import STREAMS

from .conftest import DAY1, DAY2, utc

# The examples of reference/001_0698bedec0662276.txt, verbatim (the document uses
# .json for newline-delimited JSON).
TRACK = """\
{"event_text":"signed up", "event_timestamp":1234567890, "contact_key":"abc1234"}
{"event_text":"added a friend", "event_timestamp":1234567890, "contact_key":"paul@madkudu.com", "some_other_event_field":"some_value"}
"""
IDENTIFY = """\
{"contact_key":"abc1234", "email":"paul@madkudu.com"}
{"contact_key":"432535", "email":"paul@madkudu.com", "some_other_contact_field":"some value"}
"""
GROUP = """\
{"contact_key":"abc1234", "account_key":"madkudu.com", "name": "madkudu"}
{"contact_key":"432535", "account_key":"madkudu.com", "some_other_account_field":"some value"}
"""
CRM = """\
{"email":"elon@tesla.com", "account":"tesla", "created_at": "1234567890", "is_worked":"true", "is_converted":"true", "amount": "2499"}
{"email":"elon@tesla.com", "account":"tesla", "created_at": "1234567890", "is_worked":"true", "is_converted":"true", "amount": "2499", "is_worked":"true", "is_unqualified":"false", "team_size__c": "10-49"}
"""
MALFORMED = """{"event_text":"signed up", "event_timestamp":1234567890, "contact_key":"abc1234", "key": "val"ue"}"""
CORRECTED = """{"event_text":"signed up", "event_timestamp":1234567890, "contact_key":"abc1234", "key": "val\\"ue"}"""
T_2009 = utc(2009, 2, 13, 23, 31, 30)


def ingest_all(settings, landing, day=DAY1):
    reports = {}
    for stream in STREAMS:
        if list_day_files(landing.store, stream, day):
            reports[stream] = ingest_partition(settings, landing.store, stream, day, run_id="test")
    for stream in STREAMS:
        build_table(settings, stream)
    return reports


def rows(warehouse, sql):
    return warehouse.connect().sql(sql).fetchall()


def test_reference_document_examples_load_as_described(settings, landing, warehouse):
    landing.put("identify/users.json", IDENTIFY, utc(2026, 11, 20, 9))
    landing.put("track/events.json", TRACK, utc(2026, 11, 20, 9))
    landing.put("group/accounts.json", GROUP, utc(2026, 11, 20, 9))
    landing.put("crm/leads.json", CRM, utc(2026, 11, 20, 9))
    landing.put("track/validation.json", MALFORMED + "\n" + CORRECTED + "\n", utc(2026, 11, 20, 10))
    ingest_all(settings, landing)

    assert rows(warehouse, "select contact_id, email, account_id, properties from contacts order by contact_id") == [
        ("432535", "paul@madkudu.com", "madkudu.com", '{"some_other_contact_field":"some value"}'),
        ("abc1234", "paul@madkudu.com", "madkudu.com", "{}"),
    ]
    assert rows(warehouse, "select account_id, domain, properties from accounts") == [
        ("madkudu.com", "madkudu.com", '{"name":"madkudu","some_other_account_field":"some value"}')
    ]
    # The corrected line is the same event as the first "signed up" (same contact_key,
    # event_text and timestamp): sent in a later batch, the most recent copy is kept.
    events = rows(
        warehouse,
        "select contact_id, event, event_timestamp, properties, _source_file from contact_events order by contact_id",
    )
    assert events == [
        ("abc1234", "signed up", T_2009, '{"key":"val\\"ue"}', "track/validation.json"),
        ("paul@madkudu.com", "added a friend", T_2009, '{"some_other_event_field":"some_value"}', "track/events.json"),
    ]
    assert rows(warehouse, "select file, line, field, rule, raw from rejected_records") == [
        ("track/validation.json", 1, None, "invalid_json", MALFORMED)
    ]
    # The repeated "is_worked" key of the second CRM example: the last occurrence wins.
    assert rows(
        warehouse,
        "select email, account, created_at, is_worked, is_converted, amount, is_unqualified, worked_date, properties from crm_leads",
    ) == [("elon@tesla.com", "tesla", T_2009, True, True, 2499.0, False, None, '{"team_size__c":"10-49"}')]
    statuses = dict(rows(warehouse, "select file, status from ingested_files"))
    assert statuses == {
        "identify/users.json": "loaded",
        "track/events.json": "loaded",
        "group/accounts.json": "loaded",
        "crm/leads.json": "loaded",
        "track/validation.json": "partially_loaded",
    }
    assert rows(warehouse, "select schema_drift from ingested_files where schema_drift is not null") == []
    types = dict(rows(warehouse, "select column_name, column_type from (describe crm_leads)"))
    assert (types["is_worked"], types["amount"], types["created_at"]) == ("BOOLEAN", "DOUBLE", "TIMESTAMP WITH TIME ZONE")


def test_track_event_id_is_the_dedupe_key_first_in_a_file_most_recent_across_files(settings, landing, warehouse):
    same = {"event_text": "login", "contact_key": "u1"}
    landing.put(
        "track/a.jsonl",
        [
            {**same, "event_timestamp": 1700000000, "n": 1},
            {**same, "event_timestamp": "1700000000000", "n": 2},  # milliseconds: the same instant
            {**same, "event_timestamp": "2023-11-14T22:13:20Z", "n": 3},  # ISO: the same instant again
            {**same, "event_timestamp": 1700000001, "n": 4},
        ],
        utc(2026, 11, 20, 8),
    )
    reports = ingest_all(settings, landing)
    row = reports["contact_event"].files[0]
    assert (row["rows_read"], row["rows_loaded"], row["rows_duplicate"]) == (4, 2, 2)
    assert [r[0] for r in rows(warehouse, "select properties from contact_events order by event_timestamp")] == [
        '{"n":1}',
        '{"n":4}',
    ]
    first_ids = rows(warehouse, "select event_id from contact_events order by event_id")

    landing.put("track/b.jsonl", [{**same, "event_timestamp": 1700000000, "n": 5}], utc(2026, 11, 21, 8))
    ingest_all(settings, landing, DAY2)
    assert rows(warehouse, "select event_id from contact_events order by event_id") == first_ids
    assert [r[0] for r in rows(warehouse, "select properties from contact_events order by event_timestamp")] == [
        '{"n":5}',
        '{"n":4}',
    ]
    assert all(r[0].startswith("trk_") and len(r[0]) == 36 for r in first_ids)


def test_group_membership_one_account_per_contact_latest_wins(settings, landing, warehouse):
    landing.put(
        "identify/u.jsonl", [{"contact_key": "u1", "email": "u1@x.com"}, {"contact_key": "u2", "email": "u2@x.com"}], utc(2026, 11, 20, 7)
    )
    landing.put(
        "group/g1.jsonl",
        [
            {"contact_key": "u1", "account_key": "acme.com"},
            {"contact_key": "u1", "account_key": "globex.com"},  # later line: newer
            {"contact_key": "u2", "account_key": "acme.com"},
        ],
        utc(2026, 11, 20, 8),
    )
    ingest_all(settings, landing)
    assert rows(warehouse, "select contact_id, account_id from contacts order by 1") == [("u1", "globex.com"), ("u2", "acme.com")]

    landing.put("group/g2.jsonl", [{"contact_key": "u2", "account_key": "initech"}], utc(2026, 11, 21, 8))
    ingest_all(settings, landing, DAY2)
    assert rows(warehouse, "select contact_id, account_id from contacts order by 1") == [("u1", "globex.com"), ("u2", "initech")]
    # The account upsert: a key that is not a domain gives no domain.
    assert rows(warehouse, "select account_id, domain from accounts order by 1") == [
        ("acme.com", "acme.com"),
        ("globex.com", "globex.com"),
        ("initech", None),
    ]


def test_group_never_erases_a_domain_and_merges_attributes_into_account_properties(settings, landing, warehouse):
    landing.put(
        "account/a.jsonl",
        [{"account_id": "acct-1", "domain": "initech.com", "account_properties": {"tier": "gold", "size": 10}}],
        utc(2026, 11, 20, 7),
    )
    landing.put(
        "group/g.jsonl",
        [{"contact_key": "u1", "account_key": "acct-1", "size": 50, "name": "Initech"}],
        utc(2026, 11, 20, 8),
    )
    ingest_all(settings, landing)
    assert rows(warehouse, "select account_id, domain, properties from accounts") == [
        ("acct-1", "initech.com", '{"name":"Initech","size":50,"tier":"gold"}')
    ]


def test_a_group_run_rebuilds_contacts_too():
    from ingestion_pipeline.landing import LandedFile

    f = LandedFile("group/g.jsonl", 10, "v1", utc(2026, 11, 20, 8))
    [request] = day_run_requests({("account", DAY1): [f]}, "landing")
    assert {k.to_user_string() for k in request.asset_selection} == {"account_batch", "accounts", "contacts", "rejected_records"}


def test_csv_for_every_stream_with_properties_from_non_standard_columns(settings, landing, warehouse):
    landed = utc(2026, 11, 20, 9)
    landing.put(
        "contact/2026/11/20/contacts.csv",
        "\ufeffcontact_id,email,contact_properties,plan,note\r\n"
        'c1, A@X.com ,"{""score"": 7}",pro,"says ""hi"", twice"\r\n'
        'c2,b@x.com,,,"two\nlines"\r\n',
        landed,
    )
    landing.put(
        "account/accounts.csv.gz",
        gzip.compress(b"account_id,domain,employees\na1,https://www.Acme.com:443/about,12\na2,globex.com,\n", mtime=0),
        landed,
    )
    landing.put(
        "contact_event/deep/er/events.csv",
        "event_id,contact_id,event,event_timestamp,event_properties,event_type\n"
        'e1,c1,login,2026-11-20T08:00:00+01:00,"{""n"": 1}",contact_event\n'
        "e2,c1,logout,1763625600,,\n",
        landed,
    )
    landing.put(
        "account_event/ae.csv",
        "event_id,account_id,event,event_timestamp,seats\nx1,a1,renewed,1763625600000,5\n",
        landed,
    )
    landing.put("identify/ids.csv", "contact_key,email,role\nu9,u9@x.com,admin\n", landed)
    landing.put("track/t.csv.gz", "event_text,event_timestamp,contact_key,page\nviewed,1763625600,u9,/home\n", landed)
    landing.put("group/g.csv", "contact_key,account_key,name\nu9,a2,Globex\n", landed)
    landing.put(
        "crm/leads.csv",
        "email,account,created_at,is_worked,is_converted,amount,worked_date,team\ne@x.com,acme,1763625600,false,TRUE,99.5,,red\n",
        landed,
    )
    reports = ingest_all(settings, landing)
    assert {r["file"]: r["status"] for rep in reports.values() for r in rep.files} == {
        "contact/2026/11/20/contacts.csv": "loaded",
        "account/accounts.csv.gz": "loaded",
        "contact_event/deep/er/events.csv": "loaded",
        "account_event/ae.csv": "loaded",
        "identify/ids.csv": "loaded",
        "track/t.csv.gz": "loaded",
        "group/g.csv": "loaded",
        "crm/leads.csv": "loaded",
    }
    assert rows(warehouse, "select contact_id, email, account_id, properties, _source_line from contacts order by 1") == [
        ("c1", "a@x.com", None, '{"note":"says \\"hi\\", twice","plan":"pro","score":7}', 2),
        ("c2", "b@x.com", None, '{"note":"two\\nlines"}', 3),
        ("u9", "u9@x.com", "a2", '{"role":"admin"}', 2),
    ]
    assert rows(warehouse, "select account_id, domain, properties from accounts order by 1") == [
        ("a1", "acme.com", '{"employees":"12"}'),
        ("a2", "globex.com", '{"name":"Globex"}'),
    ]
    track_id = "trk_" + hashlib.sha256(b"u9\x1fviewed\x1f2025-11-20T08:00:00.000000Z").hexdigest()[:32]
    assert rows(warehouse, "select event_id, contact_id, event, event_timestamp, properties from contact_events order by event_id") == [
        ("e1", "c1", "login", utc(2026, 11, 20, 7), '{"n":1}'),
        ("e2", "c1", "logout", utc(2025, 11, 20, 8), "{}"),
        (track_id, "u9", "viewed", utc(2025, 11, 20, 8), '{"page":"/home"}'),
    ]
    assert rows(warehouse, "select account_id, event, event_timestamp, properties from account_events") == [
        ("a1", "renewed", utc(2025, 11, 20, 8), '{"seats":"5"}')
    ]
    assert rows(warehouse, "select email, account, is_worked, is_converted, amount, worked_date, properties from crm_leads") == [
        ("e@x.com", "acme", False, True, 99.5, None, '{"team":"red"}')
    ]
    drift = dict(rows(warehouse, "select file, schema_drift from ingested_files"))
    assert drift["contact/2026/11/20/contacts.csv"] == "note,plan"
    assert drift["identify/ids.csv"] is None  # legacy attributes are the feed's shape, not drift


def test_same_content_under_the_same_or_another_name_changes_no_table(settings, landing, warehouse):
    body = "contact_key,email\nu1,u1@x.com\n"
    path = landing.put("identify/a.csv", body, utc(2026, 11, 20, 8))
    ingest_all(settings, landing)
    before = rows(warehouse, "select * from contacts")
    landing.put("identify/a.csv", body, utc(2026, 11, 21, 8))  # touched: a new version, same bytes
    landing.put("identify/copy/b.csv", body, utc(2026, 11, 21, 9))
    landing.put("contact/u.csv", "contact_id,email\nu1,u1@x.com\n", utc(2026, 11, 21, 9))  # other bytes, same record
    ingest_all(settings, landing, DAY2)
    assert path.read_text() == body  # landed files are never modified
    statuses = rows(warehouse, "select file, landing_date::VARCHAR, status from ingested_files order by landed_at, file")
    assert statuses == [
        ("identify/a.csv", "2026-11-20", "loaded"),
        ("identify/a.csv", "2026-11-21", "skipped_duplicate"),
        ("contact/u.csv", "2026-11-21", "loaded"),
        ("identify/copy/b.csv", "2026-11-21", "skipped_duplicate"),
    ]
    after = rows(warehouse, "select contact_id, email, properties from contacts")
    assert after == [(r[0], r[1], r[3]) for r in before]


def test_identical_bytes_in_another_folder_are_not_a_duplicate(settings, landing, warehouse):
    # The same bytes mean different records in contact_event/ and account_event/.
    line = json.dumps(
        {"event_id": "e1", "contact_id": "x1", "account_id": "x1", "event": "e", "event_timestamp": 1763625600, "event_properties": {}}
    )
    landing.put("contact_event/a.jsonl", line + "\n", utc(2026, 11, 20, 8))
    landing.put("account_event/a.jsonl", line + "\n", utc(2026, 11, 20, 9))
    ingest_all(settings, landing)
    assert rows(warehouse, "select file, status from ingested_files order by file") == [
        ("account_event/a.jsonl", "loaded"),
        ("contact_event/a.jsonl", "loaded"),
    ]
    assert rows(warehouse, "select count(*) from contact_events") == rows(warehouse, "select count(*) from account_events") == [(1,)]


def test_a_key_repeated_inside_properties_resolves_to_its_last_copy(settings, landing, warehouse):
    # Only the properties object repeats a key: no top-level hint, still the last wins.
    landing.put(
        "contact/a.jsonl",
        '{"contact_id":"c1","email":"a@x.com","contact_properties":{"plan":"free","seats":2,"plan":"pro"}}\n',
        utc(2026, 11, 20, 8),
    )
    ingest_all(settings, landing)
    assert rows(warehouse, "select properties from contacts") == [('{"plan":"pro","seats":2}',)]


def test_upload_documents_in_legacy_folders_may_name_the_folder_or_the_stream(settings, landing, warehouse):
    for name, declared in (("a", "identify"), ("b", "contact"), ("c", "account")):
        doc = {"stream": declared, "data": [{"contact_key": f"k{name}", "email": f"{name}@x.com"}]}
        landing.put(f"identify/2026/11/20/{name}.json", json.dumps(doc), utc(2026, 11, 20, 8))
    ingest_all(settings, landing)
    assert rows(warehouse, "select contact_id from contacts order by 1") == [("ka",), ("kb",)]
    [(status, error)] = rows(warehouse, "select status, first_error from ingested_files where file like '%c.json'")
    assert status == "rejected"
    assert "document declares stream 'account' but landed under the 'identify/' folder, which takes 'contact' records" in error


def test_a_domain_attribute_on_a_group_record_is_a_property_and_never_drops_the_membership(settings, landing, warehouse):
    landing.put("identify/u.jsonl", [{"contact_key": "c9", "email": "c9@x.com"}], utc(2026, 11, 20, 7))
    landing.put("group/g.jsonl", [{"contact_key": "c9", "account_key": "Not A Domain", "domain": "nope nope"}], utc(2026, 11, 20, 8))
    ingest_all(settings, landing)
    assert rows(warehouse, "select contact_id, account_id from contacts") == [("c9", "Not A Domain")]
    assert rows(warehouse, "select account_id, domain, properties from accounts") == [("Not A Domain", None, '{"domain":"nope nope"}')]
