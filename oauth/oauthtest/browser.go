package oauthtest

import (
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// Browser is a headless browser for the authorization flow: it keeps
// cookies, follows redirects one by one, fills Warden's static login form
// and answers the consent page. It stops at the first redirect to the
// client's redirect URI and returns that URL without requesting it.
type Browser struct {
	Client *http.Client
	// Username and Password fill the static connector's login form.
	Username, Password string
	// Decision is the consent answer: "approve" (default) or "deny".
	Decision string
	// EditConsent, when set, may change the consent form before it is
	// posted (tests drop or alter the CSRF token with it).
	EditConsent func(url.Values)
	// Visited lists every URL requested, in order.
	Visited []string
	// ConsentShown counts consent pages seen.
	ConsentShown int
}

// NewBrowser returns a browser with an empty cookie jar signing in as the
// default static test user.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{
		Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		Username: User, Password: Password, Decision: "approve",
	}
}

// PageError is an HTML page the browser could not go on from (an error
// page, a refused form).
type PageError struct {
	URL    string
	Status int
	Text   string
}

func (e *PageError) Error() string {
	return fmt.Sprintf("page %s answered %d: %s", e.URL, e.Status, e.Text)
}

var (
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	tags        = regexp.MustCompile(`<[^>]+>`)
	spaces      = regexp.MustCompile(`\s+`)
)

// Authorize starts at authURL and walks the flow until a redirect points
// at a URL beginning with stopPrefix (the client's redirect URI).
func (b *Browser) Authorize(authURL, stopPrefix string) (*url.URL, error) {
	req, err := http.NewRequest(http.MethodGet, authURL, nil)
	if err != nil {
		return nil, err
	}
	for step := 0; step < 30; step++ {
		b.Visited = append(b.Visited, req.URL.String())
		resp, err := b.Client.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			next, err := req.URL.Parse(loc)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(next.String(), stopPrefix) {
				return next, nil
			}
			if req, err = http.NewRequest(http.MethodGet, next.String(), nil); err != nil {
				return nil, err
			}
			continue
		}
		page := string(body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
			return nil, &PageError{URL: req.URL.String(), Status: resp.StatusCode, Text: Text(page)}
		}
		form := url.Values{}
		for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
			form.Set(m[1], html.UnescapeString(m[2]))
		}
		action := formAction.FindStringSubmatch(page)
		switch {
		case action != nil && strings.Contains(page, `name="password"`):
			form.Set("username", b.Username)
			form.Set("password", b.Password)
		case action != nil && form.Has("csrf"):
			b.ConsentShown++
			form.Set("decision", b.Decision)
			if b.EditConsent != nil {
				b.EditConsent(form)
			}
		default:
			return nil, &PageError{URL: req.URL.String(), Status: resp.StatusCode, Text: Text(page)}
		}
		target, err := req.URL.Parse(html.UnescapeString(action[1]))
		if err != nil {
			return nil, err
		}
		if req, err = http.NewRequest(http.MethodPost, target.String(), strings.NewReader(form.Encode())); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return nil, errors.New("too many steps without reaching the redirect URI")
}

// Text reduces an HTML page to its visible text.
func Text(page string) string {
	if i := strings.Index(page, "<main>"); i >= 0 {
		page = page[i:]
	}
	return strings.TrimSpace(spaces.ReplaceAllString(html.UnescapeString(tags.ReplaceAllString(page, " ")), " "))
}
