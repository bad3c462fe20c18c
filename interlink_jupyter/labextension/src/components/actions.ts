import { CreateClusterRequest } from '../types';

/** What the cluster UI can ask for; each promise rejects with a showable error. */
export interface ClusterActions {
  /** Resolves with the new cluster's name. */
  create(request: CreateClusterRequest): Promise<string>;
  scale(name: string, workers: number): Promise<void>;
  adapt(name: string, minimum: number, maximum: number | null): Promise<void>;
  stopAdapt(name: string): Promise<void>;
  /** Asks for confirmation first; resolves without closing when cancelled. */
  close(name: string): Promise<void>;
  insert(name: string): Promise<void>;
  openLogs(cluster: string, pod: string): void;
  openDashboard(link: string): void;
  toggleRows(name: string, open: boolean): void;
}
