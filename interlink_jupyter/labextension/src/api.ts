/**
 * REST calls to the interLink server extension (`{base_url}interlink/api/...`),
 * through `ServerConnection.makeRequest` so the server's token/cookie and XSRF
 * protection apply. Errors become `ApiError`s carrying the server's message.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  ClusterDetail,
  ClusterSummary,
  ClustersAnswer,
  ConfigAnswer,
  CreateClusterRequest,
  NodesAnswer
} from './types';
import { ApiError, errorText } from './errors';

export { ApiError, errorText };

export const API_PATH = 'interlink/api';

/** The URL of the live stream, with the token when the settings carry one. */
export function streamUrl(settings: ServerConnection.ISettings): string {
  const url = URLExt.join(settings.wsUrl, API_PATH, 'stream');
  return settings.token
    ? `${url}?token=${encodeURIComponent(settings.token)}`
    : url;
}

/** Turn an error answer into an `ApiError` (JSON `error`/`field` when given). */
export async function errorFromResponse(response: Response): Promise<ApiError> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // No body.
  }
  try {
    const body = JSON.parse(text) as {
      error?: unknown;
      message?: unknown;
      field?: unknown;
    };
    if (typeof body.error === 'string' && body.error) {
      return new ApiError(
        body.error,
        response.status,
        typeof body.field === 'string' ? body.field : null
      );
    }
    if (
      response.status !== 404 &&
      typeof body.message === 'string' &&
      body.message
    ) {
      return new ApiError(
        `${response.status} ${body.message}`,
        response.status
      );
    }
  } catch {
    // Not JSON: fall through.
  }
  if (response.status === 404) {
    return new ApiError(
      'The interLink server extension does not answer (404). Is it installed and ' +
        'enabled? Check with `jupyter server extension list` and restart Jupyter.',
      404
    );
  }
  return new ApiError(
    `${response.status} ${response.statusText || 'error'}`.trim(),
    response.status
  );
}

/** The REST client; one per sidebar, sharing the server settings. */
export class InterLinkApi {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  getNodes(): Promise<NodesAnswer> {
    return this._json<NodesAnswer>('GET', 'nodes');
  }

  getConfig(): Promise<ConfigAnswer> {
    return this._json<ConfigAnswer>('GET', 'config');
  }

  getClusters(): Promise<ClustersAnswer> {
    return this._json<ClustersAnswer>('GET', 'clusters');
  }

  getCluster(name: string): Promise<ClusterDetail> {
    return this._json<ClusterDetail>('GET', `clusters/${enc(name)}`);
  }

  createCluster(body: CreateClusterRequest): Promise<ClusterDetail> {
    return this._json<ClusterDetail>('POST', 'clusters', body);
  }

  async deleteCluster(name: string): Promise<void> {
    await this._request('DELETE', `clusters/${enc(name)}`);
  }

  scale(name: string, workers: number): Promise<ClusterSummary> {
    return this._json<ClusterSummary>('POST', `clusters/${enc(name)}/scale`, {
      workers
    });
  }

  adapt(
    name: string,
    minimum: number,
    maximum: number | null
  ): Promise<ClusterSummary> {
    return this._json<ClusterSummary>('PUT', `clusters/${enc(name)}/adapt`, {
      minimum,
      maximum
    });
  }

  stopAdapt(name: string): Promise<ClusterSummary> {
    return this._json<ClusterSummary>('DELETE', `clusters/${enc(name)}/adapt`);
  }

  /**
   * The log of one worker pod; the answer's body is read by the caller
   * (streamed while `follow`). Abort with `signal`.
   */
  logs(
    cluster: string,
    pod: string,
    options: { tail?: number; follow?: boolean; signal?: AbortSignal }
  ): Promise<Response> {
    const query = new URLSearchParams();
    if (options.tail !== undefined) {
      query.set('tail', String(options.tail));
    }
    if (options.follow) {
      query.set('follow', 'true');
    }
    const path = `clusters/${enc(cluster)}/pods/${enc(pod)}/logs?${query}`;
    return this._request('GET', path, undefined, options.signal);
  }

  private async _json<T>(
    method: string,
    path: string,
    body?: unknown
  ): Promise<T> {
    const response = await this._request(method, path, body);
    return (await response.json()) as T;
  }

  private async _request(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal
  ): Promise<Response> {
    const url = URLExt.join(this.settings.baseUrl, API_PATH, path);
    const init: RequestInit = { method, signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      if (signal?.aborted) {
        throw error;
      }
      throw new ApiError(
        `Jupyter server cannot be reached: ${errorText(error)}`,
        0
      );
    }
    if (!response.ok) {
      throw await errorFromResponse(response);
    }
    return response;
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}
