# Bob's side of a shared calendar, with python3-caldav (Debian package):
# opens the collection at URL with a capability token as the password of
# HTTP basic authentication. "list" prints the events' summaries, one a
# line, sorted; "write" tries to save an event and prints "REFUSED" and
# the error when the server refuses it, "WROTE" when it does not.
import sys

import caldav

url, token, mode = sys.argv[1:4]
client = caldav.DAVClient(url=url, username="bob", password=token)
cal = client.calendar(url=url)
if mode == "list":
    names = sorted(str(e.icalendar_instance.walk("VEVENT")[0]["SUMMARY"]) for e in cal.events())
    for n in names:
        print("EVENT", n)
    print("OK")
elif mode == "write":
    try:
        cal.save_event("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//bob//EN
BEGIN:VEVENT
UID:bobs-event
DTSTAMP:20260101T000000Z
DTSTART:20260301T090000Z
DTEND:20260301T100000Z
SUMMARY:bob was here
END:VEVENT
END:VCALENDAR
""")
        print("WROTE")
    except Exception as e:  # caldav raises its own error classes
        print("REFUSED", type(e).__name__, str(e)[:200].replace("\n", " "))
