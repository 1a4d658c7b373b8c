# Drives a CalDAV server with python3-caldav (Debian package): creates a
# calendar, saves events (one recurring with an exception and a moved
# instance, one all-day, one with a VALARM), runs a date search with
# expansion, a sync-token search and a free-busy query; then an event in
# Outlook's "W. Europe Standard Time" zone (not an IANA name) that recurs
# across a DST change, searched with server-side expansion, and a search
# that asks for part of calendar-data only. Prints "OK" and facts on success.
import datetime
import sys

import caldav

url, user, password = sys.argv[1:4]

RECURRING = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:standup
DTSTAMP:20260101T000000Z
DTSTART:20260105T090000Z
DTEND:20260105T093000Z
RRULE:FREQ=WEEKLY;BYDAY=MO
EXDATE:20260209T090000Z
SUMMARY:standup
END:VEVENT
BEGIN:VEVENT
UID:standup
DTSTAMP:20260101T000000Z
RECURRENCE-ID:20260216T090000Z
DTSTART:20260217T090000Z
DTEND:20260217T093000Z
SUMMARY:standup (moved)
END:VEVENT
END:VCALENDAR
"""

ALLDAY = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:holiday
DTSTAMP:20260101T000000Z
DTSTART;VALUE=DATE:20260210
DTEND;VALUE=DATE:20260211
SUMMARY:holiday
END:VEVENT
END:VCALENDAR
"""

ALARM = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:dentist
DTSTAMP:20260101T000000Z
DTSTART:20260410T080000Z
DTEND:20260410T090000Z
SUMMARY:dentist
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:dentist
TRIGGER:-PT15M
END:VALARM
END:VEVENT
END:VCALENDAR
"""

client = caldav.DAVClient(url=url, username=user, password=password)
principal = client.principal()
cal = principal.make_calendar(name="Python", cal_id="python")
assert any(c.url.path.rstrip("/").endswith("/python") for c in principal.calendars()), "new calendar not listed"

cal.save_event(RECURRING)
cal.save_event(ALLDAY)

found = cal.date_search(start=datetime.datetime(2026, 2, 1), end=datetime.datetime(2026, 3, 1), expand=True)
starts = []
for ev in found:
    for comp in ev.icalendar_instance.walk("VEVENT"):
        starts.append(str(comp["DTSTART"].dt))
starts.sort()
print("instances:", starts)
assert len(starts) == 4, starts  # Feb 2, the holiday on the 10th, 17 (moved), 23

result = cal.objects_by_sync_token(load_objects=True)
token = result.sync_token
n0 = len(list(result))
assert n0 == 2, n0
cal.save_event(ALARM)
changed = cal.objects_by_sync_token(sync_token=token, load_objects=True)
names = [str(o.url) for o in changed]
print("changed since token:", names)
assert len(names) == 1 and names[0].endswith("/dentist.ics"), names

fb = cal.freebusy_request(datetime.datetime(2026, 2, 1), datetime.datetime(2026, 3, 1))
busy = [str(p) for p in fb.icalendar_instance.walk("VFREEBUSY")[0].get("FREEBUSY")]
print("free-busy:", busy)
assert len(busy) == 4, busy

OUTLOOK = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:outlook
DTSTAMP:20260101T000000Z
DTSTART;TZID=W. Europe Standard Time:20260316T100000
DTEND;TZID=W. Europe Standard Time:20260316T110000
RRULE:FREQ=WEEKLY;COUNT=4
SUMMARY:weekly at 10:00 Berlin time
END:VEVENT
END:VCALENDAR
"""
cal.save_event(OUTLOOK)
utc = datetime.timezone.utc
found = cal.date_search(start=datetime.datetime(2026, 3, 15, tzinfo=utc), end=datetime.datetime(2026, 4, 10, tzinfo=utc), expand=True)
starts = []
for ev in found:
    if "UID:outlook" not in ev.data:
        continue
    assert "RRULE" not in ev.data, "the server did not expand: " + ev.data
    for comp in ev.icalendar_instance.walk("VEVENT"):
        starts.append(comp["DTSTART"].dt.astimezone(utc).strftime("%Y-%m-%d %H:%M"))
starts.sort()
print("Outlook zone instances (UTC):", starts)
assert starts == ["2026-03-16 09:00", "2026-03-23 09:00", "2026-03-30 08:00", "2026-04-06 08:00"], starts

PARTIAL = """<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
<D:prop><C:calendar-data><C:comp name="VCALENDAR"><C:prop name="VERSION"/>
<C:comp name="VEVENT"><C:prop name="UID"/><C:prop name="SUMMARY"/></C:comp></C:comp></C:calendar-data></D:prop>
<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
<C:time-range start="20260301T000000Z" end="20260401T000000Z"/></C:comp-filter></C:comp-filter></C:filter>
</C:calendar-query>"""
parts = cal.search(xml=PARTIAL)
props = set()
uids = set()
for o in parts:
    for comp in o.icalendar_instance.walk("VEVENT"):
        props |= set(comp.keys())
        uids.add(str(comp["UID"]))
print("partial calendar-data:", sorted(uids), sorted(props))
assert uids == {"standup", "outlook"}, uids
assert props == {"UID", "SUMMARY"}, props
print("OK")
