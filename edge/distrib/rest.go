package distrib

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/aegis-mesh/aegis/edge/cplink"
)

// REST fetches bundles from the control plane's REST API.
type REST struct {
	Remote *cplink.Remote
}

var _ Source = REST{}

// Fetch implements Source with GET /v1/tenants/{tenant}/bundle and
// If-None-Match.
func (r REST) Fetch(ctx context.Context, tenant, etag string) ([]byte, bool, error) {
	hdr := http.Header{}
	if etag != "" {
		hdr.Set("If-None-Match", strconv.Quote(etag))
	}
	resp, err := r.Remote.Do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(tenant)+"/bundle", nil, hdr)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, false, nil
	case http.StatusOK:
	default:
		return nil, false, fmt.Errorf("GET bundle of %s: status %d", tenant, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, RuntimeLimits.MaxArchiveBytes+1))
	if err != nil {
		return nil, false, fmt.Errorf("GET bundle of %s: %w", tenant, err)
	}
	if int64(len(data)) > RuntimeLimits.MaxArchiveBytes {
		return nil, false, fmt.Errorf("GET bundle of %s: over %d bytes", tenant, RuntimeLimits.MaxArchiveBytes)
	}
	return data, true, nil
}
