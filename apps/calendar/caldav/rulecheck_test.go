package caldav

import (
	"strings"
	"testing"
	"time"

	"github.com/teambition/rrule-go"
)

// TestCheckRule: the rules calendar clients write pass; the ones that make
// rrule-go loop without end, panic or walk millions of days per
// occurrence are refused with a message that says why.
func TestCheckRule(t *testing.T) {
	mon := "20260105T000000" // a Monday, 00:00
	tests := []struct {
		start, rule string
		refusal     string // "" to accept
	}{
		{mon, "FREQ=WEEKLY;BYDAY=MO,WE,FR", ""},
		{mon, "FREQ=MONTHLY;BYDAY=-1FR", ""},
		{mon, "FREQ=MONTHLY;BYDAY=5FR;BYSETPOS=-1", ""},
		{mon, "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", ""},
		{mon, "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", ""},
		{mon, "FREQ=YEARLY;BYDAY=20MO", ""},
		{mon, "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", ""},
		{mon, "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO", ""},
		{mon, "FREQ=DAILY;INTERVAL=3;UNTIL=20270101T000000Z", ""},
		{mon, "FREQ=HOURLY;INTERVAL=8", ""},
		{mon, "FREQ=HOURLY;INTERVAL=24;BYHOUR=0", ""},
		{mon, "FREQ=MINUTELY;INTERVAL=15;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9,10,11", ""},
		{mon, "FREQ=SECONDLY;BYDAY=MO", ""},
		{"16040101", "FREQ=YEARLY", ""},
		{mon, "FREQ=MONTHLY;BYMONTHDAY=" + strings.Repeat("1,", 100000) + "2", ""}, // repeats are dropped
		{"99991231", "FREQ=DAILY", ""},
		{mon, "FREQ=HOURLY;INTERVAL=24;BYHOUR=1", "never reaches"},
		{mon, "FREQ=HOURLY;INTERVAL=6;BYHOUR=1,2,3", "never reaches"},
		{mon, "FREQ=SECONDLY;INTERVAL=60;BYSECOND=1", "never reaches"},
		{"00000105T000000", "FREQ=WEEKLY", "year 0"},
		{mon, "FREQ=WEEKLY;UNTIL=100000101T000000Z", "bad RRULE"},
		{mon, "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "no occurrence"},
		{mon, "FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31", "no occurrence"},
		{mon, "FREQ=MONTHLY;BYDAY=+5MO;BYMONTHDAY=1", "no occurrence"},
		{mon, "FREQ=YEARLY;BYMONTH=1;BYDAY=20MO", "no occurrence"},
		{mon, "FREQ=YEARLY;BYYEARDAY=366;BYMONTH=1", "no occurrence"},
		{mon, "FREQ=MONTHLY;INTERVAL=12;BYMONTH=3", "no occurrence"},
		{mon, "FREQ=DAILY;INTERVAL=7;BYDAY=TU", "no occurrence"},
		{mon, "FREQ=HOURLY;INTERVAL=7;BYHOUR=0;BYDAY=TU", "no occurrence"},
		{mon, "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=23;BYMINUTE=59", "no occurrence"},
		{mon, "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYHOUR=23;BYMINUTE=59;BYSECOND=59", "coarser FREQ"},
		{mon, "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", "BYSETPOS"},
		{mon, "FREQ=WEEKLY;BYDAY=MO;BYSETPOS=2", "BYSETPOS"},
		{mon, "FREQ=MINUTELY;BYSETPOS=2;BYHOUR=23", "BYSETPOS"},
		{mon, "FREQ=DAILY;BYDAY=2MO", "ordinal"},
		{mon, "FREQ=MONTHLY;BYWEEKNO=2", "BYWEEKNO"},
		{mon, "FREQ=DAILY;BYYEARDAY=2", "BYYEARDAY"},
		{mon, "FREQ=WEEKLY;BYMONTHDAY=2", "BYMONTHDAY"},
		{mon, "FREQ=YEARLY;BYEASTER=0", "BYEASTER"},
		{mon, "FREQ=SECONDLY;INTERVAL=9223372036854775807", "INTERVAL"},
	}
	for _, tc := range tests {
		t.Run(tc.rule[:min(len(tc.rule), 80)], func(t *testing.T) {
			start, err := parseDT(tc.start, "", "", newZones(nil, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			_, err = wallRule(tc.rule, start.wall, time.UTC)
			switch {
			case tc.refusal == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal) || !strings.Contains(err.Error(), "RRULE")):
				t.Errorf("got %v, want a refusal saying %q", err, tc.refusal)
			}
		})
	}
}

// TestRuleIterRecovers: a panic inside rrule-go (a weekly rule from the
// year 0000 makes one, found by FuzzValidate) becomes the iterator's error
// instead of taking the process down.
func TestRuleIterRecovers(t *testing.T) {
	opt, err := parseRule("FREQ=WEEKLY")
	if err != nil {
		t.Fatal(err)
	}
	opt.Dtstart = time.Date(0, 1, 5, 0, 0, 0, 0, time.UTC)
	it := &ruleIter{value: "FREQ=WEEKLY"}
	it.guard(func() {
		rule, err := rrule.NewRRule(*opt)
		if err != nil {
			t.Fatal(err)
		}
		it.next = rule.Iterator()
	})
	for n := 0; n < 1000 && it.err == nil; n++ {
		if _, ok := it.Next(); !ok {
			break
		}
	}
	if it.err == nil || !strings.Contains(it.err.Error(), "recurrence library failed") {
		t.Fatalf("got %v, want the library's panic as an error", it.err)
	}
	if _, ok := it.Next(); ok {
		t.Error("the iterator goes on after a failure")
	}
}
