package oauth

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
)

//go:embed templates/*.html
var templateFS embed.FS

type pages struct {
	t *template.Template
}

func mustPages() *pages {
	return &pages{t: template.Must(template.ParseFS(templateFS, "templates/*.html"))}
}

// render writes a page. Rendering into a buffer first means a template
// failure becomes a clean 500, not half a page.
func (p *pages) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := p.t.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "page rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// consentPage is what the consent template shows.
type consentPage struct {
	Action       string
	ID           string
	CSRF         string
	ClientName   string
	ClientID     string
	ClientSource string // dcr, cimd, config
	RedirectHost string
	User         string
	Servers      []consentServer
	Scopes       []string
}

type consentServer struct {
	Name        string
	Description string
	Resource    string
}

// loginPage is what the static login template shows.
type loginPage struct {
	Action     string
	State      string
	ClientName string
	Username   string
	Error      string
}
