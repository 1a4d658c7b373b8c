package console

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nymote/nymote/apps/mail/mailstore"
	"github.com/nymote/nymote/store"
)

// FolderUsage is the storage one folder uses at the head.
type FolderUsage struct {
	Service string `json:"service"`
	Folder  string `json:"folder"`
	Items   int    `json:"items"`
	Bytes   int64  `json:"bytes"`
}

// sizeCache keeps what is costly to recount: folder sizes by the hash of
// their tree (which changes whenever they do), item counts by commit, and
// the repository's size on disk for a minute.
type sizeCache struct {
	mu       sync.Mutex
	trees    map[store.Hash]FolderUsage
	counts   map[store.Hash]map[string]int // commit → service → items, per user key
	disk     int64
	diskTime time.Time
}

const maxCached = 4096

func (sc *sizeCache) diskBytes(dir string) int64 {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if time.Since(sc.diskTime) < time.Minute {
		return sc.disk
	}
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	sc.disk, sc.diskTime = n, time.Now()
	return n
}

func (sc *sizeCache) tree(h store.Hash, compute func() FolderUsage) FolderUsage {
	sc.mu.Lock()
	u, ok := sc.trees[h]
	sc.mu.Unlock()
	if ok {
		return u
	}
	u = compute()
	sc.mu.Lock()
	if sc.trees == nil || len(sc.trees) > maxCached {
		sc.trees = map[store.Hash]FolderUsage{}
	}
	sc.trees[h] = u
	sc.mu.Unlock()
	return u
}

// usage lists the user's folders and their sizes at the head.
func (c *Console) usage(user string) ([]FolderUsage, error) {
	sn, err := c.st.Snapshot("")
	if err != nil {
		return nil, err
	}
	var out []FolderUsage
	if c.opts.Mail != nil {
		if _, err := c.st.LookupUser(user); err == nil {
			if u, err := c.opts.Mail.User(context.Background(), user); err == nil {
				for _, mb := range u.Mailboxes() {
					fu := FolderUsage{Service: ServiceMail, Folder: mb.Name()}
					for _, m := range mb.Messages() {
						fu.Items++
						fu.Bytes += m.Size
					}
					out = append(out, fu)
				}
			}
		}
	} else if boxes, err := mailstore.ReadMailboxes(sn, user); err == nil {
		for _, b := range boxes {
			dir := mailstore.BoxDir(user, b.ID)
			e, err := sn.Stat(dir)
			if err != nil {
				continue
			}
			fu := c.sizes.tree(e.Hash, func() FolderUsage {
				fu := FolderUsage{}
				msgs, err := mailstore.ReadMailboxMessages(sn, user, b.ID)
				if err == nil {
					for _, m := range msgs {
						fu.Items++
						fu.Bytes += m.Size
					}
				}
				return fu
			})
			fu.Service, fu.Folder = ServiceMail, b.Info.Name
			out = append(out, fu)
		}
	}
	for _, s := range []string{ServiceContacts, ServiceCalendar} {
		for _, coll := range davCollections(sn, s, user) {
			dir := davCollDir(s, user, coll)
			e, err := sn.Stat(dir)
			if err != nil {
				continue
			}
			fu := c.sizes.tree(e.Hash, func() FolderUsage {
				var fu FolderUsage
				ents, err := sn.List(dir + "/o")
				if err != nil {
					return fu
				}
				for _, e := range ents {
					fu.Items++
					if data, err := c.st.ReadBlob(e.Hash); err == nil {
						fu.Bytes += int64(len(data))
					}
				}
				return fu
			})
			fu.Service, fu.Folder = s, coll
			out = append(out, fu)
		}
	}
	return out, nil
}

// growthPoint is the user's item counts per service at one commit.
type growthPoint struct {
	When   time.Time
	Counts map[string]int
}

// growthSpan is how many recent commits the growth plot samples.
const (
	growthSpan    = 5000
	growthSamples = 24
)

func (c *Console) growth(user string) ([]growthPoint, error) {
	infos, err := c.st.Log(store.LogOptions{Limit: growthSpan})
	if err != nil || len(infos) == 0 {
		return nil, err
	}
	step := max(1, len(infos)/growthSamples)
	var out []growthPoint
	for i := len(infos) - 1; i >= 0; i -= step {
		out = append(out, growthPoint{When: infos[i].When, Counts: c.countsAt(user, infos[i].Hash)})
	}
	if out[len(out)-1].When != infos[0].When {
		out = append(out, growthPoint{When: infos[0].When, Counts: c.countsAt(user, infos[0].Hash)})
	}
	return out, nil
}

func (c *Console) countsAt(user string, commit store.Hash) map[string]int {
	key := store.BlobHash([]byte(user + "\x00" + commit.String()))
	c.sizes.mu.Lock()
	m, ok := c.sizes.counts[key]
	c.sizes.mu.Unlock()
	if ok {
		return m
	}
	m = map[string]int{}
	sn, err := c.st.Snapshot(commit.String())
	if err == nil {
		if ents, err := sn.List(mailstore.UserDir(user)); err == nil {
			for _, e := range ents {
				if strings.HasSuffix(e.Path, ".eml") {
					m[ServiceMail]++
				}
			}
		}
		for _, s := range []string{ServiceContacts, ServiceCalendar} {
			if ents, err := sn.List(s + "/" + user); err == nil {
				for _, e := range ents {
					if strings.Contains(e.Path, "/o/") {
						m[s]++
					}
				}
			}
		}
	}
	c.sizes.mu.Lock()
	if c.sizes.counts == nil || len(c.sizes.counts) > maxCached {
		c.sizes.counts = map[store.Hash]map[string]int{}
	}
	c.sizes.counts[key] = m
	c.sizes.mu.Unlock()
	return m
}

func (c *Console) storagePage(w http.ResponseWriter, r *http.Request, s *session) error {
	us, err := c.usage(s.user)
	if err != nil {
		return err
	}
	totals := map[string]FolderUsage{}
	var order []string
	for _, u := range us {
		t, ok := totals[u.Service]
		if !ok {
			order = append(order, u.Service)
		}
		t.Service = u.Service
		t.Items += u.Items
		t.Bytes += u.Bytes
		totals[u.Service] = t
	}
	var ts []FolderUsage
	for _, s := range order {
		ts = append(ts, totals[s])
	}
	c.render(w, 200, "storage", s, "Storage", struct {
		Folders, Totals []FolderUsage
		Disk            int64
	}{us, ts, c.sizes.diskBytes(c.st.Path())})
	return nil
}

var serviceColors = map[string]string{ServiceMail: "#2b6cb0", ServiceContacts: "#2f855a", ServiceCalendar: "#b7791f"}

// growthSVG draws the user's items per service over the recent history,
// server-side: numbers only go into the markup.
func (c *Console) growthSVG(w http.ResponseWriter, r *http.Request, s *session) error {
	pts, err := c.growth(s.user)
	if err != nil {
		return err
	}
	const W, H, pad = 640, 240, 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="items over time">`, W, H)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fff"/>`, W, H)
	if len(pts) == 0 {
		b.WriteString(`<text x="20" y="40" font-family="sans-serif" font-size="14">No history yet</text></svg>`)
	} else {
		maxN := 1
		for _, p := range pts {
			for _, n := range p.Counts {
				maxN = max(maxN, n)
			}
		}
		t0, t1 := pts[0].When, pts[len(pts)-1].When
		span := t1.Sub(t0).Seconds()
		x := func(t time.Time) float64 {
			if span <= 0 {
				return pad
			}
			return pad + (W-2*pad)*t.Sub(t0).Seconds()/span
		}
		y := func(n int) float64 { return H - pad - (H-2*pad)*float64(n)/float64(maxN) }
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, pad, H-pad, W-pad, H-pad)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>`, pad, pad, pad, H-pad)
		fmt.Fprintf(&b, `<text x="4" y="%d" font-family="sans-serif" font-size="11">%d</text>`, pad+4, maxN)
		fmt.Fprintf(&b, `<text x="4" y="%d" font-family="sans-serif" font-size="11">0</text>`, H-pad)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-family="sans-serif" font-size="11">%s</text>`, pad, H-pad+16, t0.UTC().Format("2006-01-02 15:04"))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-family="sans-serif" font-size="11" text-anchor="end">%s</text>`, W-pad, H-pad+16, t1.UTC().Format("2006-01-02 15:04"))
		ly := 16
		for _, svc := range []string{ServiceMail, ServiceContacts, ServiceCalendar} {
			var pl []string
			any := false
			for _, p := range pts {
				if p.Counts[svc] > 0 {
					any = true
				}
				pl = append(pl, fmt.Sprintf("%.1f,%.1f", x(p.When), y(p.Counts[svc])))
			}
			if !any {
				continue
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, serviceColors[svc], strings.Join(pl, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-family="sans-serif" font-size="12" fill="%s">%s: %d</text>`, W-pad-120, ly, serviceColors[svc], svc, pts[len(pts)-1].Counts[svc])
			ly += 16
		}
		b.WriteString(`</svg>`)
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write([]byte(b.String()))
	return nil
}
