package dav_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nymote/nymote/apps/internal/dav/davtest"
	"github.com/nymote/nymote/store"
)

// BenchmarkGet GETs objects of a 500-object address book over keep-alive
// connections, in parallel.
func BenchmarkGet(b *testing.B) {
	s := davtest.Start(b, carddavKind())
	for i := range 500 {
		r := s.Do("alice", "PUT", fmt.Sprintf("/alice/default/%d.vcf", i), vcf(fmt.Sprint(i), "N"), "Content-Type", vcardType)
		if r.Status != 201 {
			b.Fatal(r.Status)
		}
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req, _ := http.NewRequest("GET", fmt.Sprintf("%s/alice/default/%d.vcf", s.URL, i%500), nil)
			req.SetBasicAuth("alice", davtest.Users["alice"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.StatusCode)
			}
			i += 7
		}
	})
}

// BenchmarkListing answers PROPFIND Depth 1 with ETags and an initial
// sync-collection on a 3000-object address book.
func BenchmarkListing(b *testing.B) {
	s := davtest.Start(b, carddavKind())
	fill(b, s, 3000)
	for _, tc := range []struct{ name, method, body string }{
		{"propfind", "PROPFIND", `<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>`},
		{"sync", "REPORT", syncReport("")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				if r := s.Do("alice", tc.method, "/alice/default/", tc.body, "Depth", "1"); r.Status != 207 {
					b.Fatal(r.Status)
				}
			}
		})
	}
}

// fill PUTs n vCards straight into the store in one commit.
func fill(b *testing.B, s *davtest.Server, n int) {
	_, err := s.Store.Update(context.Background(), store.CommitOptions{}, func(tx *store.Tx) error {
		for i := range n {
			if err := tx.Put("contacts/alice/c/default/o/"+store.Shard(fmt.Sprintf("%d.vcf", i)), []byte(vcf(fmt.Sprint(i), "N"))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPut PUTs b.N vCards one after another, each a durable commit
// ("dav"), and makes the same commits straight into the store ("store"),
// so that the DAV layer's share of a PUT shows in one run.
func BenchmarkPut(b *testing.B) {
	b.Run("dav", func(b *testing.B) {
		s := davtest.Start(b, carddavKind())
		s.Do("alice", "PROPFIND", "/alice/", "", "Depth", "0") // set up the home
		b.ResetTimer()
		for i := range b.N {
			if r := s.Do("alice", "PUT", fmt.Sprintf("/alice/default/%d.vcf", i), vcf(fmt.Sprint(i), "N"), "Content-Type", vcardType); r.Status != 201 {
				b.Fatal(r.Status)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		s := davtest.Start(b, carddavKind())
		s.Do("alice", "PROPFIND", "/alice/", "", "Depth", "0")
		b.ResetTimer()
		for i := range b.N {
			name := fmt.Sprintf("%d.vcf", i)
			_, err := s.Store.Update(context.Background(), store.CommitOptions{Message: "put"}, func(tx *store.Tx) error {
				return tx.Put("contacts/alice/c/default/o/"+store.Shard(name), []byte(vcf(fmt.Sprint(i), "N")))
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMultiget answers an addressbook-multiget of every object of a
// 3000-object address book, with ETags and address data, as one REPORT
// (what a client does after its first listing).
func BenchmarkMultiget(b *testing.B) {
	s := davtest.Start(b, carddavKind())
	fill(b, s, 3000)
	var body strings.Builder
	body.WriteString(`<C:addressbook-multiget xmlns:d="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/><C:address-data/></d:prop>`)
	for i := range 3000 {
		fmt.Fprintf(&body, "<d:href>/alice/default/%d.vcf</d:href>", i)
	}
	body.WriteString(`</C:addressbook-multiget>`)
	if r := s.Do("alice", "REPORT", "/alice/default/", body.String(), "Depth", "1"); r.Status != 207 {
		b.Fatal(r.Status) // and the view and blob cache are warm, as after PUTs
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if r := s.Do("alice", "REPORT", "/alice/default/", body.String(), "Depth", "1"); r.Status != 207 {
			b.Fatal(r.Status)
		}
	}
	// CPU time (server and client in this process) is steadier than wall
	// time on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
