package dav_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/nymote/nymote/apps/internal/dav/davtest"
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
