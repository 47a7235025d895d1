// Type declarations of the hotplex client (hotplex-protocol(7)).

export declare const DEFAULT_SOCKET: string;
export declare const PROTO_VERSION: number;

/** An error line of the daemon: code as in ERROR CODES. */
export declare class HotplexError extends Error {
  constructor(code: string, message: string, data?: object, session?: string);
  readonly code: string;
  /** The daemon's message, without the code. */
  readonly text: string;
  readonly data: { [key: string]: unknown };
  readonly session?: string;
}

/** The connection ended before an awaited reply; code "disconnected". */
export declare class ConnectionLost extends HotplexError {
  constructor(message?: string);
}

/** One line of a turn. */
export declare class Event {
  readonly type: string;
  readonly data: any;
  readonly seq?: number;
  readonly id: string | null;
  readonly session?: string;
  /** "cli" for a line of a turn the CLI started by itself (attach). */
  readonly origin: string | null;
  readonly raw: { [key: string]: unknown };
}

export interface PermissionRequest {
  session: string;
  requestId: string;
  request_id: string;
  toolId?: string;
  name: string;
  input: { [key: string]: unknown };
  event: Event;
}

export type PermissionAnswer =
  | 'allow'
  | 'deny'
  | {
      decision: 'allow' | 'deny';
      message?: string;
      updated_input?: object;
      updatedInput?: object;
    }
  | null
  | undefined;

/** The execute and open options of the protocol. */
export interface SessionOptions {
  model?: string;
  permission_mode?: string;
  allowed_tools?: string[];
  disallowed_tools?: string[];
  append_system_prompt?: string;
  max_turns?: number;
  timeout_ms?: number;
  slash_commands?: boolean;
  approvals?: 'daemon' | 'client';
  approval_timeout_ms?: number;
  max_budget_usd?: number;
  [option: string]: unknown;
}

export interface ExecuteOptions extends SessionOptions {
  workdir?: string;
  queue?: boolean;
  onPermission?: (
    req: PermissionRequest,
  ) => PermissionAnswer | Promise<PermissionAnswer>;
}

export interface Attachment extends AsyncIterable<Event> {
  readonly info: { session: string; seq: number; state: string; lost?: [number, number] };
  readonly session: string;
}

export interface Settings {
  model?: string;
  permission_mode?: string;
  max_budget_usd?: number;
  [setting: string]: unknown;
}

export declare class Client {
  constructor(opts?: { socket?: string });
  readonly path: string;
  /** Resolves when the connection is made; rejects if it cannot be. */
  readonly connected: Promise<void>;
  request(op: string, fields?: object): Promise<{ [key: string]: any }>;
  hello(client?: string): Promise<{ [key: string]: any }>;
  execute(session: string, prompt: string, opts?: ExecuteOptions): AsyncIterable<Event>;
  open(session: string, opts?: SessionOptions & { workdir?: string }): Promise<any>;
  interrupt(session: string): Promise<{ interrupting: boolean }>;
  stop(session: string, opts?: { reason?: string }): Promise<any>;
  reset(session: string): Promise<any>;
  stats(session?: string): Promise<any>;
  sessions(): Promise<any[]>;
  permission(
    session: string,
    requestId: string,
    decision: 'allow' | 'deny',
    opts?: { message?: string; updatedInput?: object },
  ): Promise<any>;
  configure(session: string, settings?: Settings): Promise<any>;
  policyCheck(text: string, target?: 'prompt' | 'bash' | 'path'): Promise<any>;
  audit(filters?: object): Promise<any>;
  reload(): Promise<any>;
  shutdown(): Promise<any>;
  attach(session: string, opts?: { sinceSeq?: number }): Promise<Attachment>;
  detach(session: string): Promise<any>;
  close(): Promise<void>;
}
