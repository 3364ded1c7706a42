// gitserver serves the bare repositories under -root over Git's smart HTTP protocol
// (git http-backend through CGI), for clones and pushes. A push to a repository that does not
// exist yet creates it (bare, default branch main), so tests need no setup step.
// No authentication: it is meant for 127.0.0.1 only.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// A repository path: one or more segments, the last ending in .git; no "..", no hidden names.
var repoPath = regexp.MustCompile(`^/((?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.git)/`)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	root := flag.String("root", "", "directory holding the bare repositories (created if missing)")
	gitBin := flag.String("git", "git", "git executable")
	flag.Parse()
	if *root == "" {
		log.Fatal("-root is required")
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(absRoot, 0o755); err != nil {
		log.Fatal(err)
	}
	execPath, err := exec.Command(*gitBin, "--exec-path").Output()
	if err != nil {
		log.Fatalf("%s --exec-path: %v", *gitBin, err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env: []string{
			"GIT_PROJECT_ROOT=" + absRoot,
			"GIT_HTTP_EXPORT_ALL=1",
			// http-backend refuses receive-pack to anonymous users unless http.receivepack is set.
			"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true",
			"HOME=" + absRoot,
		},
	}
	var mu sync.Mutex // serialises repository creation
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		m := repoPath.FindStringSubmatch(r.URL.Path)
		if m == nil {
			http.NotFound(w, r)
			return
		}
		dir := filepath.Join(absRoot, filepath.FromSlash(m[1]))
		if r.URL.Path == "/"+m[1]+"/info/refs" && r.URL.Query().Get("service") == "git-receive-pack" {
			mu.Lock()
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				out, err := exec.Command(*gitBin, "init", "--quiet", "--bare", "--initial-branch=main", dir).CombinedOutput()
				if err != nil {
					mu.Unlock()
					log.Printf("git init %s: %v: %s", dir, err, out)
					http.Error(w, "cannot create repository", http.StatusInternalServerError)
					return
				}
				log.Printf("created %s", dir)
			}
			mu.Unlock()
		}
		// net/http/cgi rejects chunked bodies (git sends packs over 1 MiB chunked): spool them.
		if len(r.TransferEncoding) > 0 {
			f, n, err := spool(r.Body)
			if err != nil {
				log.Printf("spooling request body: %v", err)
				http.Error(w, "cannot read request body", http.StatusInternalServerError)
				return
			}
			defer f.Close()
			r.Body, r.ContentLength, r.TransferEncoding = f, n, nil
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		backend.ServeHTTP(rec, r)
		log.Printf("%s %s?%s %d", r.Method, r.URL.Path, r.URL.RawQuery, rec.status)
	})
	log.Printf("serving %s on http://%s", absRoot, *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}

// spool copies body to an unlinked temporary file and returns it rewound, with its size.
func spool(body io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp("", "gitserver-body-")
	if err != nil {
		return nil, 0, err
	}
	_ = os.Remove(f.Name())
	n, err := io.Copy(f, body)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
