package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashChild is the child process of TestCrash: it commits in a loop and
// reports each commit that Update returned, and repacks (GC, PackLoose,
// merging the batches' packs) now and then, until it is killed. The commit
// log is emptied in the background every few records (maybeCheckpoint),
// so that kills also land in those checkpoints and the replacement of the
// log's file.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("NYMOTE_CRASH_DIR")
	if dir == "" {
		t.Skip("only run as TestCrash's child")
	}
	walEarlyRecords = 3
	s, err := Open(dir, Options{GCLooseObjects: -1})
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		key := fmt.Sprintf("%d-%d", os.Getpid(), i)
		h, err := s.Update(context.Background(), CommitOptions{Message: key}, func(tx *Tx) error {
			tx.Put("items/"+Shard(key), []byte(strings.Repeat(key, 100)))
			if i%3 == 0 {
				tx.Delete("items/" + Shard(fmt.Sprintf("%d-%d", os.Getpid(), i-1)))
			}
			return tx.Put("last", []byte(key))
		})
		if err != nil {
			fmt.Println("update failed:", err)
			os.Exit(4)
		}
		fmt.Fprintf(w, "%s %s\n", h, key)
		w.Flush()
		if i%40 == 39 {
			if _, err := s.GC(context.Background()); err != nil {
				fmt.Println("gc failed:", err)
				os.Exit(5)
			}
		}
		if i%40 == 19 {
			if _, err := s.PackLoose(context.Background()); err != nil {
				fmt.Println("pack failed:", err)
				os.Exit(6)
			}
		}
		if i%10 == 9 {
			// Batches of commits become packs; merging them is the
			// repack that runs most often.
			if err := s.Flush(); err != nil {
				fmt.Println("flush failed:", err)
				os.Exit(7)
			}
			if _, err := s.MergePacks(context.Background()); err != nil {
				fmt.Println("merge failed:", err)
				os.Exit(8)
			}
		}
	}
}

// TestCrash kills a committing process with SIGKILL at random moments; after
// each kill the repository must open, pass git fsck, and hold every commit
// the child was told about.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := filepath.Join(t.TempDir(), "crash.git")
	s, err := Init(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	var reported []string
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	const kills = 25
	for k := 0; k < kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "NYMOTE_CRASH_DIR="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Killed at a random moment after its first commit (not after a
		// fixed time: on a loaded machine the child may take longer than
		// that to open the store).
		var got []string
		select {
		case l, ok := <-lines:
			if ok {
				got = append(got, l)
			}
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			t.Fatalf("kill %d: the child reported no commit in two minutes", k+1)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		for l := range lines {
			got = append(got, l)
		}
		for _, l := range got {
			f := strings.Fields(l)
			if len(f) != 2 || len(f[0]) != 40 {
				t.Fatalf("child said %q", l)
			}
			reported = append(reported, f[0])
		}
		cmd.Wait()

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("kill %d: reopen: %v", k+1, err)
		}
		head, _ := s.Resolve("")
		log, err := s.Log(LogOptions{})
		if err != nil {
			t.Fatalf("kill %d: history: %v", k+1, err)
		}
		history := map[string]bool{}
		for _, c := range log {
			history[c.Hash.String()] = true
		}
		for _, h := range reported {
			if !history[h] {
				t.Fatalf("kill %d: reported commit %s is not in the history of %s", k+1, h, head)
			}
		}
		s.Close()
		fsck(t, dir)
	}
	if len(reported) < kills {
		t.Errorf("only %d commits in %d runs: the child hardly ran", len(reported), kills)
	}
	t.Logf("%d kills, %d reported commits, all present", kills, len(reported))
}
