// Package objstore keeps attachment content in S3-compatible object
// storage (AWS S3, Supabase Storage's S3 endpoint, Cloud Storage's XML
// API) through aws-sdk-go-v2's S3 client; it implements attachment.Blobs.
package objstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/parleyhq/parley/internal/attachment"
)

// Config says which bucket to use and how to reach it.
type Config struct {
	Bucket string
	// Endpoint is the S3 API's base URL; empty is AWS's for Region.
	Endpoint        string
	Region          string
	AccessKeyID     string
	SecretAccessKey string
	// HTTPClient carries the requests; nil is the SDK's default.
	HTTPClient *http.Client
}

// Store is a bucket.
type Store struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
}

var _ attachment.Blobs = (*Store)(nil)

// New returns a Store for cfg. Requests use path-style addressing
// (endpoint/bucket/key), which Supabase Storage requires and every other
// S3-compatible service accepts.
func New(cfg Config) *Store {
	opts := s3.Options{
		Region:       cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		UsePathStyle: true,
		// Checksums only when the operation requires one: Cloud Storage and
		// older S3-compatible servers refuse the newer trailing checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	client := s3.New(opts)
	return &Store{client: client, presign: s3.NewPresignClient(client), bucket: cfg.Bucket}
}

// Put implements attachment.Blobs.
func (s *Store) Put(ctx context.Context, key, contentType string, content []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(content),
		ContentType: &contentType, ContentLength: aws.Int64(int64(len(content))),
		// Downloaded, never rendered, by a browser that opens its URL.
		ContentDisposition: aws.String("attachment"),
	})
	if err != nil {
		return fmt.Errorf("put object: %w", err)
	}
	return nil
}

// Get implements attachment.Blobs.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get object: %w", err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, attachment.MaxRequestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read object: %w", err)
	}
	return b, nil
}

// DeletePrefix implements attachment.Blobs: it lists the keys under
// prefix a page at a time and deletes each page in one request.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list objects: %w", err)
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]types.ObjectIdentifier, len(page.Contents))
		for i, o := range page.Contents {
			ids[i] = types.ObjectIdentifier{Key: o.Key}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete objects: %w", err)
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("delete objects: %d not deleted, the first: %s", len(out.Errors), aws.ToString(out.Errors[0].Message))
		}
	}
	return nil
}

// SignGet implements attachment.Blobs with a SigV4 presigned GET.
func (s *Store) SignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	// The response is a download whatever the object's metadata says.
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key, ResponseContentDisposition: aws.String("attachment")}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign: %w", err)
	}
	return req.URL, nil
}
