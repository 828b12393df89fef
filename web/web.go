// Package web serves the pages a person opens in a browser to see
// Switchboard work: an index at /, a player widget (/demo/widget), an
// operator console (/demo/console) and a live dashboard (/dashboard). They
// are plain HTML, CSS and JavaScript embedded in the binary; the pages speak
// Socket.IO with a small client of their own (static/sio.js), so they work
// offline and nothing third-party is served.
package web

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

//go:embed static
var staticFS embed.FS

// Options say which pages are served and what they need to know.
type Options struct {
	// Pages serves the index, the widget and the console; Dashboard the
	// dashboard and its figures (config: SWITCHBOARD_PAGES,
	// SWITCHBOARD_DASHBOARD).
	Pages     bool
	Dashboard bool
	// OperatorAuth says operators need a token: the console shows a token
	// field, and the dashboard's figures need an operator's token.
	OperatorAuth bool
	// Routing is how chats reach operators (broadcast, claim, auto): the
	// console shows claim, release, transfer and availability outside
	// broadcast.
	Routing string
	// Verify checks a token (nil when none can be checked).
	Verify func(token string) (*messages.Identity, error)

	Env        string
	Version    string
	SocketPath string
	// The limits the widget and console show and check before sending.
	MaxImageBytes int
	MaxTextChars  int
	ImageTypes    []string

	// The server's own figures, for the dashboard.
	Metrics *metrics.Metrics
	Health  func(context.Context) (*messages.Health, error)
	Stats   func(context.Context) (*messages.Stats, error)
	// Transports counts Engine.IO sessions that began with long-polling,
	// still polling and upgraded to a websocket (every other socket is a
	// websocket); ok is false when they cannot be counted.
	Transports func() (polling, upgraded int, ok bool)
	// In a cluster: Publish hands the cluster this node's snapshot maker,
	// which it writes once a second for every node's dashboard, and
	// ClusterFigures reads every live node's latest snapshot by node id
	// (nil on a single node).
	Publish        func(snapshot func() []byte)
	ClusterFigures func(context.Context) (map[string][]byte, error)

	Log *slog.Logger
}

// page is one rendered HTML page.
type page struct {
	name string
	tmpl *template.Template
}

// pageData is what the templates read: settings the scripts need, passed
// as data attributes (the CSP forbids inline scripts).
type pageData struct {
	Title         string
	Version       string
	Env           string
	SocketPath    string
	MaxImageBytes int
	MaxTextChars  int
	ImageTypes    string
	ImageAccept   string
	ImageNames    string
	OperatorAuth  bool
	Routing       string
	Pages         bool
	Dashboard     bool
}

// Register mounts the pages on mux, each wrapped by wrap (the server's
// CORS rules). index answers / for clients that do not ask for HTML (the
// JSON index), and every path nobody else serves.
func Register(mux *http.ServeMux, wrap func(http.Handler) http.Handler, o Options, index http.Handler) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	data := o.pageData()
	render := func(file, title string) (*page, error) {
		t, err := template.ParseFS(static, file)
		if err != nil {
			return nil, fmt.Errorf("web: %s: %w", file, err)
		}
		d := data
		d.Title = title
		var buf bytes.Buffer
		if err := t.Execute(&buf, d); err != nil {
			return nil, fmt.Errorf("web: %s: %w", file, err)
		}
		return &page{name: file, tmpl: t}, nil
	}
	serve := func(p *page, title string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d := data
			d.Title = title
			secure(w, r)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			if err := p.tmpl.Execute(w, d); err != nil {
				o.Log.Debug("page not written", "page", p.name, "err", err)
			}
		})
	}

	var indexPage http.Handler
	if o.Pages || o.Dashboard {
		assets := http.FileServerFS(static)
		mux.Handle("GET /assets/", wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name := strings.TrimPrefix(r.URL.Path, "/assets/")
			if strings.HasSuffix(name, ".html") || name == "" || strings.Contains(name, "/") {
				// Templates are served rendered, at their own paths.
				http.NotFound(w, r)
				return
			}
			secure(w, r)
			w.Header().Set("Cache-Control", "no-cache")
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + name
			assets.ServeHTTP(w, r2)
		})))
	}
	if o.Pages {
		for _, p := range []struct{ path, file, title string }{
			{"GET /demo/widget", "widget.html", "Switchboard · player widget"},
			{"GET /demo/console", "console.html", "Switchboard · operator console"},
		} {
			pg, err := render(p.file, p.title)
			if err != nil {
				return err
			}
			mux.Handle(p.path, wrap(serve(pg, p.title)))
		}
		pg, err := render("index.html", "Switchboard")
		if err != nil {
			return err
		}
		indexPage = serve(pg, "Switchboard")
	}
	if o.Dashboard {
		pg, err := render("dashboard.html", "Switchboard · dashboard")
		if err != nil {
			return err
		}
		mux.Handle("GET /dashboard", wrap(serve(pg, "Switchboard · dashboard")))
		mux.Handle("GET /dashboard/data", wrap(http.HandlerFunc(o.serveFigures)))
		if o.Publish != nil {
			o.Publish(o.snapshot)
		}
	}
	mux.Handle("/", wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if indexPage != nil && r.URL.Path == "/" && r.Method == http.MethodGet && wantsHTML(r) {
			indexPage.ServeHTTP(w, r)
			return
		}
		index.ServeHTTP(w, r)
	})))
	return nil
}

func (o *Options) pageData() pageData {
	var accept, names []string
	for _, t := range o.ImageTypes {
		accept = append(accept, t)
		names = append(names, strings.ToUpper(strings.TrimPrefix(t, "image/")))
	}
	return pageData{
		Version:       o.Version,
		Env:           o.Env,
		SocketPath:    o.SocketPath,
		MaxImageBytes: o.MaxImageBytes,
		MaxTextChars:  o.MaxTextChars,
		ImageTypes:    strings.Join(o.ImageTypes, ","),
		ImageAccept:   strings.Join(accept, ","),
		ImageNames:    strings.Join(names, ", "),
		OperatorAuth:  o.OperatorAuth,
		Routing:       o.Routing,
		Pages:         o.Pages,
		Dashboard:     o.Dashboard,
	}
}

// wantsHTML reports whether a request asks for a page: browsers navigating
// list text/html in Accept; fetch, curl and the npm suite send */* or JSON
// and keep getting the JSON index.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// secure sets the headers every page and asset carries: scripts, styles
// and connections only from this server (websockets to this host), images
// also from data: and blob: URLs (chat images are base64), no framing.
func secure(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	connect := "'self'"
	if host := r.Host; host != "" && !strings.ContainsAny(host, " ;'\"") {
		connect += " ws://" + host + " wss://" + host
	}
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src "+connect+"; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}
